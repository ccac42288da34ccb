"""Latency for NetAdapt: a predictor that estimates (the look-up table), a meter that measures
(a ``latency`` backend), and the anchored estimate the loop decides with.

NetAdapt only needs two small protocols, so any table or backend plugs in:

- :class:`LatencyPredictor`: ``predict(spec) -> ms`` (:class:`LUTPredictor` over a
  ``latency.lut.LatencyLUT`` is one; the table interpolates over channel counts and raises
  ``LUTMissError`` for what it cannot cover);
- :class:`LatencyMeter`: ``measure(spec) -> Measurement`` (:class:`BackendMeter` adapts any
  ``latency`` backend built by ``latency.make_backend``, which holds the device lock exclusively).

**Pooled estimates.** A proposal's latency is estimated as its prediction times the median
measured / predicted ratio over every network measured so far in the run (the seed and each
chosen network): ``predict(proposal) * median(measured / predicted)``. A predictor that is off
by a factor (another load, another clock) then cannot make the loop stop short of, or run past, a
budget that is checked against measurements; and unlike anchoring on the last measurement alone,
one noisy measurement does not rescale every estimate of the next iteration.
The predictor is the directory's fitted one (``nas latency fit``) where it has one, else the table.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from latency.errors import CalibrationError
from latency.lut import LatencyLUT, build_and_calibrate
from latency.pieces import overhead_piece, unique_pieces
from nas.spec.arch import ArchSpec
from netadapt.grid import DEFAULT_GRID_STEP, combined_specs, grid_specs
from netadapt.proposals import TargetOptions


@runtime_checkable
class LatencyPredictor(Protocol):
    def predict(self, spec: ArchSpec) -> float:
        """Predicted latency of ``spec`` in milliseconds."""
        ...


@dataclass(frozen=True)
class Measurement:
    """A measured latency: the estimate (``median_ms``, the name NetAdapt's records keep), the raw
    spread, and the upper end of the estimate's interval."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    ci_high_ms: float = math.nan  # the upper end of the estimate's ~95% interval (nan: a meter without one)

    @property
    def high_ratio(self) -> float:
        """The interval's upper end relative to the estimate (1.0 where there is no interval)."""
        if math.isfinite(self.ci_high_ms) and self.median_ms > 0 and self.ci_high_ms >= self.median_ms:
            return self.ci_high_ms / self.median_ms
        return 1.0


def _measurement(result: Any) -> Measurement:
    high = float(getattr(result, "ci_high_ms", 0.0) or 0.0)
    return Measurement(float(result.estimate_ms), float(result.p10_ms), float(result.p90_ms),
                       high if high > 0 else math.nan)


@runtime_checkable
class LatencyMeter(Protocol):
    def measure(self, spec: ArchSpec) -> Measurement:
        """Measure ``spec`` end to end on the target device."""
        ...


class BackendMeter:
    """A :class:`LatencyMeter` over a ``latency`` backend (anything whose ``measure`` returns a
    result with ``estimate_ms``, ``p10_ms`` and ``p90_ms``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def measure(self, spec: ArchSpec) -> Measurement:
        return _measurement(self.backend.measure(spec))

    def measure_many(self, specs: list[ArchSpec]) -> list[Measurement]:
        """Measure several specs back to back (one worker), for paired comparisons."""
        return [_measurement(result) for result in self.backend.measure_many(list(specs))]

    def __repr__(self) -> str:
        return f"BackendMeter({self.backend!r})"


class PooledEstimate:
    """``estimate(spec) -> (predicted, estimated)`` with ``estimated = predicted * ratio``, where
    ``ratio`` is the median of measured / predicted over every network measured so far in the run
    (``pairs`` of ``(measured_ms, predicted_ms)``). One noisy measurement then moves the scale of
    every estimate by a fraction of its error, not by all of it."""

    def __init__(self, predictor: LatencyPredictor, pairs: Sequence[tuple[float, float]]) -> None:
        self.predictor = predictor
        ratios = [m / p for m, p in pairs if math.isfinite(m) and math.isfinite(p) and m > 0 and p > 0]
        if not ratios:
            raise ValueError(f"no measured network with a positive prediction to anchor the estimates on "
                             f"({len(pairs)} pair(s)); a latency predictor must predict a positive latency")
        self.ratio = statistics.median(ratios)
        self.pairs = tuple(pairs)

    def __call__(self, spec: ArchSpec) -> tuple[float, float]:
        predicted = float(self.predictor.predict(spec))
        return predicted, predicted * self.ratio


class AnchoredEstimate(PooledEstimate):
    """A :class:`PooledEstimate` anchored on one network, the current one:
    ``estimated = measured(current) * predicted / predicted(current)``."""

    def __init__(self, predictor: LatencyPredictor, current: ArchSpec, measured_ms: float) -> None:
        self.current_predicted = float(predictor.predict(current))
        if not self.current_predicted > 0:
            raise ValueError(f"the predicted latency of the current network is {self.current_predicted!r} ms; "
                             "a look-up table must predict a positive latency")
        super().__init__(predictor, [(measured_ms, self.current_predicted)])
        self.measured_ms = measured_ms


class LUTPredictor:
    """``predict(spec)`` of a ``latency.lut.LatencyLUT``, calibrated where the table has a calibration."""

    def __init__(self, lut: LatencyLUT) -> None:
        self.lut = lut

    def predict(self, spec: ArchSpec) -> float:
        return float(self.lut.predict(spec, calibrated=True))


def build_netadapt_lut(directory: str | Path, spec: ArchSpec, backend: Any, *, step: int, options: TargetOptions,
                       grid_step: int = DEFAULT_GRID_STEP, calibration: int = 4, seed: int = 0,
                       log: Callable[[str], None] = print) -> LatencyLUT:
    """Build (or complete) a look-up table in ``directory`` for pruning ``spec``: the pieces of
    the NetAdapt grid around it, then a calibration against end-to-end measurements of ``spec``
    and ``calibration`` combined shrinks. Interrupted builds keep what they measured."""
    resolution = backend.resolution or spec.resolution
    lut = LatencyLUT(directory, backend.stamp(resolution=resolution),
                     source={"kind": "netadapt", "arch_id": spec.arch_id, "step": step, "grid_step": grid_step})
    grid = grid_specs(spec, step, options, grid_step)
    extra = combined_specs(spec, step, options, calibration, seed) if calibration else []
    checks = [spec, *extra] if calibration and lut.calibration is None else []
    todo = len(lut.missing([overhead_piece(), *unique_pieces(grid + extra, lut.resolution)]))  # as build_lut counts
    if todo:
        log(f"look-up table {directory}: measuring {todo} pieces ({len(grid)} grid specs)")
    try:
        built, report = build_and_calibrate(lut, backend, grid + extra, checks)
    except CalibrationError as error:  # the pooled anchor rescales estimates anyway: go on uncalibrated
        log(f"look-up table: {error}")
        return lut
    if built.measured:
        log(f"look-up table: {built.describe()}")
    if report is not None:
        after = report.after or report.before
        log(f"look-up table calibrated on {report.n} networks (the seed and {report.n - 1} combined shrinks, "
            f"--lut-calibration {calibration}): mean |error| {after.mean_abs_pct_error:.1%}")
    return lut
