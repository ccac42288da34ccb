"""Evaluate one candidate: measured (or predicted) latency, then the proxy task.

This runs on a Ray worker (or inline). It returns a typed record, :class:`Evaluation`, whose
fields the driver stores as the trial's user attributes, so a worker that dies loses nothing but
its own trial. Latency comes first: it is cheap, and a network that cannot be measured is not
worth training.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Mapping

from latency.cache import CachedBackend
from latency.config import LatencyConfig, make_backend
from latency.predictor import load_predictor, open_predictor, predictor_kind
from latency.protocol import pool
from latency.stamp import device_name
from nas.campaign.config import EvaluatorConfig
from nas.campaign.reward import RewardConfig
from nas.runtime.devicelock import device_lock
from nas.spec.arch import ArchSpec
from nas.training.data import open_cached
from nas.training.proxy import train_proxy


def _attrs(record: Any) -> dict[str, Any]:
    """A record's fields, without those that are None (absent attributes stay absent)."""
    return {key: value for key, value in dataclasses.asdict(record).items() if value is not None}


def _from_attrs(cls: type, attrs: Mapping[str, Any]) -> Any:
    return cls(**{f.name: attrs[f.name] for f in dataclasses.fields(cls) if f.name in attrs})


@dataclass(frozen=True)
class LatencyRecord:
    """A candidate's latency: measured on the device, predicted by the look-up table, or both
    (``lut_ms`` beside the measurement). ``latency_ms`` is the figure the reward uses."""

    latency_ms: float
    latency_source: str  # measured | lut
    measure_seconds: float
    latency_p10_ms: float | None = None
    latency_p90_ms: float | None = None
    # No raw CV: the std/mean of the raw calls (a fraction) is ruled by stalls (2.21 was one stall
    # among 3 ms calls); p10/p90 give the raw spread and ci_low/high the estimate's precision.
    latency_repeats: int | None = None
    latency_stamp: dict[str, Any] | None = None
    lut_ms: float | None = None  # the prediction (fitted predictor, else the summed table)
    lut_model: str | None = None  # what predicted it: the fitted model's name, or "table"
    latency_ci_low_ms: float | None = None  # the estimate's ~95% interval
    latency_ci_high_ms: float | None = None
    latency_precise: bool | None = None  # False: the interval stayed wider than the tolerance
    latency_blocks: int | None = None  # paired blocks timed
    latency_raw_median_ms: float | None = None  # the candidate's own calls, absolute
    screen: str | None = None  # source screen: "measured" (its reward could enter the top-k) or "predicted"
    screen_bound: float | None = None  # the reward at the optimistic end of the prediction's error band
    screen_threshold: float | None = None  # the top-k reward it had to reach (None: fewer than k finished)

    def attrs(self) -> dict[str, Any]:
        return _attrs(self)


@dataclass(frozen=True)
class Evaluation(LatencyRecord):
    """What the worker returns for one candidate: its latency and its proxy-task scores."""

    accuracy: float = float("nan")
    top5: float = float("nan")
    held_out_loss: float = float("nan")
    train_loss: float = float("nan")
    train_seconds: float = 0.0
    proxy_epochs: int = 0
    proxy_steps: int = 0
    total_seconds: float = 0.0

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "Evaluation":
        """The evaluation stored on a finished trial (its user attributes)."""
        return _from_attrs(cls, attrs)


@dataclass(frozen=True)
class ScreenGate:
    """What a ``screen`` evaluation decides by: the campaign's reward, and the reward a candidate
    must be able to reach to enter the top-k (``None``: fewer than k trials finished, so measure)."""

    reward: RewardConfig
    threshold: float | None


IMPRECISE_RETRIES = 1  # extra measurements of a result whose interval is wider than the tolerance


def measure_latency(spec: ArchSpec, latency: LatencyConfig, resolution: int) -> LatencyRecord:
    """Latency of ``spec`` at ``resolution``: measured, predicted (by the directory's fitted
    predictor, else its look-up table), or both side by side.

    A measurement whose interval stays wider than the tolerance is measured once more and the two
    pooled (more blocks narrow the interval); if it is still imprecise, ``latency_precise`` says so
    on the trial and the progress line counts it."""
    started = time.perf_counter()
    spec = spec.replace(resolution=resolution)
    lut_ms = lut_model = None
    if latency.source in ("lut", "both"):
        assert latency.lut is not None  # LatencyConfig requires a table for these sources
        predictor = open_predictor(latency.lut)
        try:
            lut_ms, lut_model = float(predictor.predict(spec)), predictor_kind(predictor)
        finally:
            predictor.close()
    if latency.source == "lut":
        assert lut_ms is not None
        return LatencyRecord(latency_ms=lut_ms, latency_source="lut", lut_ms=lut_ms, lut_model=lut_model,
                             measure_seconds=time.perf_counter() - started)
    backend = make_backend(latency, resolution=resolution)
    try:
        result = backend.measure(spec)
        for _ in range(IMPRECISE_RETRIES):  # bounded: an imprecise result is measured again, pooled
            if result.precise:
                break
            again = backend.measure(spec)  # a CachedBackend pools it with the stored blocks itself
            result = again if isinstance(backend, CachedBackend) else pool(result, again, latency.tolerance)
    finally:
        cache = getattr(backend, "cache", None)  # a CachedBackend's SQLite connection
        if cache is not None:
            cache.close()
    return LatencyRecord(latency_ms=result.estimate_ms, latency_source="measured", lut_ms=lut_ms, lut_model=lut_model,
                         latency_p10_ms=result.p10_ms, latency_p90_ms=result.p90_ms,
                         latency_repeats=result.repeats, latency_stamp=result.stamp.to_dict(),
                         latency_ci_low_ms=result.ci_low_ms, latency_ci_high_ms=result.ci_high_ms,
                         latency_precise=result.precise, latency_blocks=result.blocks,
                         latency_raw_median_ms=result.median_ms, measure_seconds=time.perf_counter() - started)


def _screened(spec: ArchSpec, latency: LatencyConfig, resolution: int, accuracy: float,
              gate: ScreenGate | None) -> LatencyRecord:
    """``screen``: the prediction, and a measurement only where the reward at the optimistic end
    of the predictor's error band could reach the top-k threshold."""
    started = time.perf_counter()
    assert latency.lut is not None  # LatencyConfig requires one for screen
    predictor = load_predictor(latency.lut)
    predicted = float(predictor.predict(spec.replace(resolution=resolution)))
    threshold = gate.threshold if gate is not None else None
    bound = None
    if gate is not None and threshold is not None:
        bound = gate.reward.score(accuracy, predicted * (1.0 - predictor.band))
    if bound is not None and threshold is not None and bound < threshold:
        return LatencyRecord(latency_ms=predicted, latency_source="lut", lut_ms=predicted, lut_model=predictor.kind,
                             screen="predicted", screen_bound=bound, screen_threshold=threshold,
                             measure_seconds=time.perf_counter() - started)
    measured = measure_latency(spec, dataclasses.replace(latency, source="measure"), resolution)
    return dataclasses.replace(measured, lut_ms=predicted, lut_model=predictor.kind, screen="measured",
                               screen_bound=bound, screen_threshold=threshold)


def evaluate_candidate(spec_yaml: str, evaluator: EvaluatorConfig, latency: LatencyConfig, seed: int,
                       gate: ScreenGate | None = None) -> Evaluation:
    """Latency and proxy accuracy of one spec; raises on failure (the trial then FAILs).

    Latency comes first, except under ``screen``, whose decision to measure needs the accuracy."""
    started = time.perf_counter()
    spec = ArchSpec.from_yaml(spec_yaml)
    resolution = latency.resolution or evaluator.resolution
    if latency.source != "screen":
        measured = measure_latency(spec, latency, resolution)
    # Quiet measurement: the whole proxy task (data, compiling, steps, evaluation) holds the device
    # lock shared, so a measurement on this host (which holds it exclusively) never times beside it.
    with device_lock(device_name(latency.device), exclusive=False):
        data = open_cached(evaluator.data_config(seed))
        proxy = train_proxy(spec, data, evaluator.train_config(seed), device=None, threads=evaluator.threads)
    if latency.source == "screen":
        measured = _screened(spec, latency, resolution, proxy.top1, gate)
    return Evaluation(**dataclasses.asdict(measured), accuracy=proxy.top1, top5=proxy.top5,
                      held_out_loss=proxy.held_out_loss, train_loss=proxy.train_loss,
                      train_seconds=proxy.train_seconds + proxy.eval_seconds, proxy_epochs=proxy.epochs,
                      proxy_steps=proxy.steps, total_seconds=time.perf_counter() - started)
