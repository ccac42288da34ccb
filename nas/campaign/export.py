"""Export searched architectures as spec YAML files with their provenance.

Each file is the exact spec the campaign evaluated (it rebuilds the same network), preceded by a
comment header: campaign, trial, seed, proxy accuracy, latency with its device stamp, and reward.
``read_provenance`` parses that header back.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from nas.campaign.config import CampaignConfig
from nas.campaign.results import pareto_mask
from nas.campaign.study import COMPLETE
from nas.spec.arch import ArchSpec
from nas.spec.errors import NasError

PREFIX = "# provenance: "


def provenance(config: CampaignConfig, trial: Any) -> dict[str, Any]:
    attrs = trial.user_attrs
    return {"campaign": config.name, "trial": trial.number, "seed": attrs.get("seed", config.seed),
            "arch_id": attrs.get("arch_id"), "proxy_accuracy": attrs.get("accuracy"),
            "latency_ms": attrs.get("latency_ms"), "latency_p10_ms": attrs.get("latency_p10_ms"),
            "latency_p90_ms": attrs.get("latency_p90_ms"), "latency_source": attrs.get("latency_source"),
            "latency_stamp": attrs.get("latency_stamp"), "reward": attrs.get("reward"),
            "reward_kind": config.reward.kind, "target_ms": config.reward.target_ms,
            "space": config.space.name, "controller": config.controller.name, "decisions": attrs.get("decisions")}


def write_export(config: CampaignConfig, trial: Any, out_dir: str | Path) -> Path:
    """Write one trial's spec with its provenance header; returns the file."""
    spec = ArchSpec.from_yaml(trial.user_attrs["spec_yaml"])
    spec = spec.replace(name=f"{config.name}_trial{trial.number}")
    info = provenance(config, trial)
    header = "\n".join(f"{PREFIX}{key}: {json.dumps(value)}" for key, value in info.items())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{config.name}_trial{trial.number:04d}_{spec.arch_id}.yaml"
    path.write_text(f"# Exported by `nas export` from campaign {config.name!r}.\n{header}\n{spec.to_yaml()}")
    return path


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance header of an exported spec file."""
    found = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith(PREFIX):
            key, _, value = line[len(PREFIX):].partition(": ")
            found[key] = json.loads(value)
    return found


def select_trials(study: Any, *, best: bool = False, pareto: bool = False, trials: Iterable[int] = ()) -> list[Any]:
    """The finished trials to export: the best reward, the Pareto front, or given numbers."""
    done = [t for t in study.get_trials(deepcopy=False, states=(COMPLETE,))
            if "spec_yaml" in t.user_attrs and t.user_attrs.get("reward") is not None]
    chosen: dict[int, Any] = {}
    if best:
        if not done:
            raise NasError("no finished trials to export yet")
        top = max(done, key=lambda t: t.user_attrs["reward"])
        chosen[top.number] = top
    if pareto and done:
        mask = pareto_mask([t.user_attrs["accuracy"] for t in done], [t.user_attrs["latency_ms"] for t in done])
        chosen.update({t.number: t for t, keep in zip(done, mask) if keep})
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in trials:
        trial = by_number.get(number)
        if trial is None or trial.state != COMPLETE or "spec_yaml" not in trial.user_attrs:
            raise NasError(f"--trial {number}: no finished trial with that number "
                           f"(finished: {sorted(t.number for t in done)[:20]})")
        chosen[number] = trial
    return [chosen[number] for number in sorted(chosen)]
