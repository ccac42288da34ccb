"""Latency for NetAdapt: a predictor that estimates (the look-up table), a meter that measures
(the MindSpore backend), and the anchored estimate the loop decides with.

NetAdapt only needs two small protocols, so any table or backend plugs in:

- :class:`LatencyPredictor`: ``predict(spec) -> ms`` (``latency.lut.LatencyLUT`` is one; it
  interpolates over channel counts and raises ``LUTMissError`` for what it cannot cover);
- :class:`LatencyMeter`: ``measure(spec) -> Measurement`` (:class:`BackendMeter` adapts any
  ``latency`` backend, e.g. ``MindSporeBackend``, which holds the device lock exclusively).

**Anchored estimates.** The loop's current latency is *measured*; a proposal's latency is
estimated as the measured latency of the current network scaled by the table's predicted
relative change, ``measured(current) * predict(proposal) / predict(current)``. A table that is
off by a factor (another load, another clock) then cannot make the loop stop short of, or run
past, a budget that is checked against measurements, and each iteration removes the share of
latency the schedule asks for.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from nas.spec import ArchSpec


@runtime_checkable
class LatencyPredictor(Protocol):
    def predict(self, spec: ArchSpec) -> float:
        """Predicted latency of ``spec`` in milliseconds."""
        ...


@dataclass(frozen=True)
class Measurement:
    """A measured latency: the median of repeated runs and its spread."""

    median_ms: float
    p10_ms: float
    p90_ms: float


@runtime_checkable
class LatencyMeter(Protocol):
    def measure(self, spec: ArchSpec) -> Measurement:
        """Measure ``spec`` end to end on the target device."""
        ...


class BackendMeter:
    """A :class:`LatencyMeter` over a ``latency`` backend (anything whose ``measure`` returns a
    result with ``median_ms``, ``p10_ms`` and ``p90_ms``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def measure(self, spec: ArchSpec) -> Measurement:
        result = self.backend.measure(spec)
        return Measurement(float(result.median_ms), float(result.p10_ms), float(result.p90_ms))

    def measure_many(self, specs: list[ArchSpec]) -> list[Measurement]:
        """Measure several specs back to back (one worker), for paired comparisons."""
        return [Measurement(float(r.median_ms), float(r.p10_ms), float(r.p90_ms))
                for r in self.backend.measure_many(list(specs))]

    def __repr__(self) -> str:
        return f"BackendMeter({self.backend!r})"


class AnchoredEstimate:
    """``estimate(spec) -> (predicted, estimated)`` anchored at the measured current network:
    ``estimated = measured(current) * predicted / predicted(current)``."""

    def __init__(self, predictor: LatencyPredictor, current: ArchSpec, measured_ms: float) -> None:
        self.predictor = predictor
        self.current_predicted = float(predictor.predict(current))
        if not self.current_predicted > 0:
            raise ValueError(f"the predicted latency of the current network is {self.current_predicted!r} ms; "
                             "a look-up table must predict a positive latency")
        self.measured_ms = measured_ms

    def __call__(self, spec: ArchSpec) -> tuple[float, float]:
        predicted = float(self.predictor.predict(spec))
        return predicted, self.measured_ms * predicted / self.current_predicted


def mindspore_meter(device: str = "CPU", *, batch: int = 1, resolution: int | None = None,
                    threads: int | None = None, **timing: Any) -> BackendMeter:
    """A meter over ``latency.MindSporeBackend`` (isolated worker, exclusive device lock)."""
    from latency.mindspore_backend import MindSporeBackend

    return BackendMeter(MindSporeBackend(device, batch=batch, resolution=resolution, threads=threads, **timing))


def grid_specs(spec: ArchSpec, step: int, options: Any, grid_step: int = 1) -> list[ArchSpec]:
    """``spec`` and, for every target, every ``grid_step``-th valid smaller width (always the
    smallest): the specs whose pieces a NetAdapt look-up table needs, one change at a time."""
    from netadapt.proposals import targets, valid_widths

    found: dict[str, ArchSpec] = {spec.arch_id: spec}
    for target in targets(spec, options):
        widths = list(valid_widths(spec, target, step))
        chosen = widths[grid_step - 1::grid_step]
        if widths and widths[-1] not in chosen:
            chosen.append(widths[-1])
        for _, variant in chosen:
            found.setdefault(variant.arch_id, variant)
    return list(found.values())


def combined_specs(spec: ArchSpec, step: int, options: Any, count: int, seed: int = 0) -> list[ArchSpec]:
    """``count`` specs with many targets shrunk at once (random fractions): end-to-end
    calibration points that look like the networks NetAdapt walks through."""
    from netadapt.proposals import targets, valid_widths, width_of

    rng = random.Random(seed)
    found: dict[str, ArchSpec] = {}
    for attempt in range(20 * count + 20):  # bounded: duplicates are skipped
        if len(found) >= count:
            break
        fraction = 0.35 + 0.6 * rng.random()
        variant = spec
        for target in targets(spec, options):
            if rng.random() < 0.5:
                continue
            limit = width_of(variant, target) * fraction
            for width, candidate in valid_widths(variant, target, step):
                if width <= limit:
                    variant = candidate
                    break
        if variant.arch_id != spec.arch_id:
            found.setdefault(variant.arch_id, dataclasses.replace(variant, name=f"{spec.name}_cal{len(found)}"))
    return list(found.values())


def build_netadapt_lut(directory: str | Path, spec: ArchSpec, backend: Any, *, step: int, options: Any,
                       grid_step: int = 1, calibration: int = 4, seed: int = 0,
                       log: Callable[[str], None] = print) -> Any:
    """Build (or complete) a look-up table in ``directory`` for pruning ``spec``: the pieces of
    the NetAdapt grid around it, then a calibration against end-to-end measurements of ``spec``
    and ``calibration`` combined shrinks. Interrupted builds keep what they measured."""
    from latency.lut import LatencyLUT, additivity_check, build_lut
    from latency.pieces import unique_pieces

    resolution = backend.resolution or spec.resolution
    lut = LatencyLUT(directory, backend.stamp(resolution=resolution),
                     source={"kind": "netadapt", "arch_id": spec.arch_id, "step": step, "grid_step": grid_step})
    grid = grid_specs(spec, step, options, grid_step)
    extra = combined_specs(spec, step, options, calibration, seed) if calibration else []
    pieces = unique_pieces(grid + extra, lut.resolution)
    todo = len(lut.missing(pieces))
    if todo:
        log(f"look-up table {directory}: measuring {todo} of {len(pieces)} pieces ({len(grid)} grid specs)")
        report = build_lut(lut, backend, pieces)
        log(f"look-up table: {report.describe()}")
    if calibration and lut.calibration is None:
        checks = [spec, *extra]
        measured = [result.median_ms for result in backend.measure_many(checks)]
        report = additivity_check(lut, checks, measured)
        after = report.get("after") or report["before"]
        log(f"look-up table calibrated on {len(checks)} networks: mean |error| {after['mean_abs_pct_error']:.1%}")
    return lut


def covering(predictor: LatencyPredictor, specs: Iterable[ArchSpec]) -> None:
    """Predict every spec once, so that a look-up-table miss surfaces before any training."""
    for spec in specs:
        predictor.predict(spec)
