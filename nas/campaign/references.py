"""Reference models as points on a campaign's plots: each measured under the campaign's latency
settings and, when asked, trained on its proxy task. Results are kept in
``<run dir>/references.json`` (keyed by ``arch_id``), so a plot measures each reference once."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from nas.campaign.config import CampaignConfig
from nas.campaign.driver import dataset_classes
from nas.campaign.evaluate import evaluate_candidate, measure_latency
from nas.campaign.plots import ReferencePoint
from nas.spec.arch import ArchSpec
from search_spaces import references

REFERENCE_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large", "mnasnet_a1", "mobilenet_v2")
CACHE_FILE = "references.json"


def reference_points(config: CampaignConfig, run_dir: str | Path, trials: list[Any], *, with_accuracy: bool = False,
                     log: Callable[[str], None] = print) -> list[ReferencePoint]:
    """:data:`REFERENCE_MODELS` at the campaign's measured latency (and proxy accuracy, if asked).
    ``trials`` are the campaign's; a stored spec gives the proxy task's class count without
    opening the dataset."""
    cache_path = Path(run_dir) / CACHE_FILE
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    stored = next((t.user_attrs["spec_yaml"] for t in trials if "spec_yaml" in t.user_attrs), None)
    classes = ArchSpec.from_yaml(stored).num_classes if stored else dataset_classes(config)
    points = []
    for name in REFERENCE_MODELS:
        spec = references.get(name).replace(num_classes=classes, resolution=config.evaluator.resolution)
        entry = cache.get(spec.arch_id, {})
        if "latency_ms" not in entry:
            log(f"measuring {name} ...")
            entry.update(measure_latency(spec, config.latency, config.measure_resolution()).attrs())
        if with_accuracy and "accuracy" not in entry:
            log(f"training {name} on the proxy task ...")
            entry.update(evaluate_candidate(spec.to_yaml(), config.evaluator, config.latency, config.seed).attrs())
        cache[spec.arch_id] = entry
        cache_path.write_text(json.dumps(cache, indent=1))
        points.append(ReferencePoint(name, entry["latency_ms"], entry.get("accuracy")))
    return points
