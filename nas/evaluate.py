"""Evaluate one candidate: measured (or predicted) latency, then the proxy task.

This runs on a Ray worker (or inline). It returns plain data, so the driver can store it and a
worker that dies loses nothing but its own trial. Latency comes first: it is cheap, and a
network that cannot be measured is not worth training.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from nas.campaign_config import EvaluatorConfig, LatencyConfig
from nas.spec import ArchSpec

_DATA_CACHE: dict[Any, Any] = {}


def _data(evaluator: EvaluatorConfig, seed: int) -> Any:
    """Open the dataset once per worker process."""
    from nas.data import open_data

    config = evaluator.data_config(seed)
    if config not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[config] = open_data(config)
    return _DATA_CACHE[config]


def latency_backend(latency: LatencyConfig, resolution: int) -> Any:
    """The measuring backend of a campaign (cached per device stamp unless disabled)."""
    from latency.mindspore_backend import MindSporeBackend

    backend = MindSporeBackend(latency.device, batch=latency.batch, resolution=resolution, threads=latency.threads,
                               warmup=latency.warmup, min_repeats=latency.min_repeats,
                               max_repeats=latency.max_repeats, tolerance=latency.tolerance,
                               timeout_s=latency.timeout_s)
    if not latency.cache:
        return backend
    from latency.cache import CachedBackend, LatencyCache

    return CachedBackend(backend, LatencyCache())


def measure_latency(spec: ArchSpec, latency: LatencyConfig, resolution: int) -> dict[str, Any]:
    """Latency attributes of ``spec``: measured, predicted from the LUT, or both."""
    attrs: dict[str, Any] = {}
    started = time.perf_counter()
    if latency.source in ("lut", "both"):
        from latency.lut import LatencyLUT

        lut = LatencyLUT(latency.lut)
        try:
            attrs["lut_ms"] = float(lut.predict(spec.replace(resolution=resolution)))
        finally:
            lut.close()
    if latency.source in ("measure", "both"):
        backend = latency_backend(latency, resolution)
        try:
            result = backend.measure(spec.replace(resolution=resolution))
        finally:
            cache = getattr(backend, "cache", None)  # a CachedBackend's SQLite connection
            if cache is not None:
                cache.close()
        attrs.update(latency_ms=result.median_ms, latency_p10_ms=result.p10_ms, latency_p90_ms=result.p90_ms,
                     latency_cv=result.cv, latency_repeats=result.repeats, latency_stamp=result.stamp.to_dict(),
                     latency_source="measured")
    else:
        attrs.update(latency_ms=attrs["lut_ms"], latency_source="lut")
    attrs["measure_seconds"] = time.perf_counter() - started
    return attrs


def evaluate_candidate(spec_yaml: str, evaluator: Mapping[str, Any], latency: Mapping[str, Any],
                       seed: int) -> dict[str, Any]:
    """Latency and proxy accuracy of one spec; raises on failure (the trial then FAILs)."""
    from nas.train import train_proxy

    started = time.perf_counter()
    evaluator_config = EvaluatorConfig(**evaluator)
    latency_config = LatencyConfig(**latency)
    spec = ArchSpec.from_yaml(spec_yaml)
    attrs = measure_latency(spec, latency_config, latency_config.resolution or evaluator_config.resolution)
    data = _data(evaluator_config, seed)
    from latency.stamp import device_name

    proxy = train_proxy(spec, data, evaluator_config.train_config(seed), device=device_name(latency_config.device),
                        threads=evaluator_config.threads)
    attrs.update(accuracy=proxy.top1, top5=proxy.top5, held_out_loss=proxy.held_out_loss, train_loss=proxy.train_loss,
                 train_seconds=proxy.train_seconds + proxy.eval_seconds, proxy_epochs=proxy.epochs,
                 proxy_steps=proxy.steps, total_seconds=time.perf_counter() - started)
    return attrs
