"""Timing protocols: how a measurement turns calls of a network into one estimate with an interval.

``plain``: warm up, then time single calls until the order-statistics ~95% interval of their
median lies within ``tolerance`` of it (or ``max_repeats``). The estimate is the median.

``paired`` (the default): the candidate and a fixed *anchor* network of the same stamp are timed
alternately in short blocks (A C A C ... A), ``block_calls`` calls each. On a shared or drifting
host both slow down together, so the ratio of the candidate's block median to the mean of the two
anchor blocks around it is steadier than either time. The estimate is the median of those ratios
times the anchor's latency *pooled over the device server's life* (and over earlier servers of the
same stamp, kept in the anchor store), so estimates of one stamp share one scale. The interval is
a bootstrap of the median ratio, times the same scale. Blocks are added until the interval's
half-width is within ``tolerance`` (after ``min_blocks``), or ``max_blocks`` / ``max_seconds`` is
reached; then the result is flagged imprecise.

Why block medians of ratios: on this project's 2-core reference host a block median of 10 calls
of MobileNetV3-Large had a CV of 11%; the ratio of block medians to an interleaved anchor had
7.5%, and the pooled median of ratios converges to a few percent in tens of blocks
(``python -m bench.latency`` measures both protocols side by side).

Python's garbage collector is off while a protocol times. Threads are not pinned: pinning
MindSpore's CPU runtime to one core doubled its latency on that host.
"""
from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from latency.result import LatencyResult, converged, summarize

ANCHOR = "mobilenet_v3_small"  # the paired protocol's anchor network, built at the measurement's resolution
BOOTSTRAP_RESAMPLES = 400
BLOCK_TARGET_S = 0.01  # a block lasts about this long (more calls for fast networks, 3 to 50)


@dataclass(frozen=True)
class ProtocolSettings:
    """How long and how precisely to time. See the module docstring."""

    protocol: str = "paired"
    warmup: int = 10
    min_repeats: int = 10
    max_repeats: int = 100
    tolerance: float = 0.02
    block_calls: int | None = None  # None: calls for a block of about 10 ms, 3 to 50, per network
    min_blocks: int = 8
    max_blocks: int = 400
    max_seconds: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _time_calls(call: Callable[[], Any], sync: Callable[[], None] | None, count: int) -> list[float]:
    clock = time.perf_counter
    times = []
    for _ in range(count):
        start = clock()
        call()
        if sync is not None:
            sync()
        times.append((clock() - start) * 1e3)
    return times


def _calls_per_block(call_ms: float) -> int:
    return int(min(50, max(3, math.ceil(BLOCK_TARGET_S * 1e3 / max(call_ms, 1e-3)))))


def time_plain(call: Callable[[], Any], sync: Callable[[], None] | None, settings: ProtocolSettings) -> list[float]:
    """Warm up, then time ``call`` until the median converges or ``max_repeats``; ms per call."""
    _time_calls(call, sync, settings.warmup)
    times: list[float] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < settings.max_repeats:  # bounded by max_repeats
            times += _time_calls(call, sync, 1)
            if len(times) >= settings.min_repeats and converged(times, settings.tolerance):
                break
    finally:
        if enabled:
            gc.enable()
    return times


def bootstrap_median(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """The median of ``values`` and a ~95% bootstrap interval of it."""
    data = np.asarray(values, dtype=np.float64)
    middle = float(np.median(data))
    if len(data) < 3:
        return middle, float(data.min()), float(data.max())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(BOOTSTRAP_RESAMPLES, len(data)))
    medians = np.median(data[picks], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return middle, float(low), float(high)


@dataclass(frozen=True)
class PairedTiming:
    """What one paired measurement timed."""

    ratios: list[float]  # candidate block median / mean of the anchor blocks around it
    anchor_blocks: list[float]  # the anchor's block medians (ms)
    candidate_times: list[float]  # every timed candidate call (ms)
    precise: bool
    block_calls: int


def time_paired(call: Callable[[], Any], anchor: Callable[[], Any], sync: Callable[[], None] | None,
                settings: ProtocolSettings) -> PairedTiming:
    """Interleave candidate and anchor blocks until the median ratio's interval is within the
    tolerance (the anchor's scale is one number, so the estimate's interval is the ratio's)."""
    _time_calls(call, sync, settings.warmup)
    _time_calls(anchor, sync, settings.warmup)
    if settings.block_calls is not None:
        per_block = anchor_block = settings.block_calls
    else:  # each network's block lasts about BLOCK_TARGET_S, so a cheap candidate is not drowned
        per_block = _calls_per_block(statistics.median(_time_calls(call, sync, 3)))
        anchor_block = _calls_per_block(statistics.median(_time_calls(anchor, sync, 3)))
    started = time.monotonic()
    enabled = gc.isenabled()
    gc.disable()
    ratios: list[float] = []
    anchors: list[float] = [statistics.median(_time_calls(anchor, sync, anchor_block))]
    candidate_times: list[float] = []
    precise = False
    try:
        for _ in range(settings.max_blocks):  # bounded: max_blocks, and max_seconds below
            block = _time_calls(call, sync, per_block)
            anchors.append(statistics.median(_time_calls(anchor, sync, anchor_block)))
            candidate_times += block
            ratios.append(statistics.median(block) / (0.5 * (anchors[-2] + anchors[-1])))
            if len(ratios) >= settings.min_blocks and len(ratios) % 2 == 0:
                middle, low, high = bootstrap_median(ratios)
                if max(middle - low, high - middle) <= settings.tolerance * middle:
                    precise = True
                    break
            if time.monotonic() - started > settings.max_seconds:
                break
    finally:
        if enabled:
            gc.enable()
    return PairedTiming(ratios=ratios, anchor_blocks=anchors, candidate_times=candidate_times, precise=precise,
                        block_calls=per_block)


def paired_result(raw: LatencyResult, ratios: Sequence[float], anchor_ms: float, tolerance: float) -> LatencyResult:
    """The paired-protocol result: ``raw`` (the candidate's timed calls) with the estimate, the
    interval and the precision flag of the median ``ratios`` at the anchor scale ``anchor_ms``."""
    middle, low, high = bootstrap_median(ratios)
    precise = len(ratios) >= 2 and max(middle - low, high - middle) <= tolerance * middle
    return dataclasses.replace(raw, estimate_ms=middle * anchor_ms, ci_low_ms=low * anchor_ms,
                               ci_high_ms=high * anchor_ms, precise=precise, blocks=len(ratios),
                               anchor_ms=anchor_ms, samples=tuple(ratios))


def pool(old: LatencyResult, new: LatencyResult, tolerance: float, keep: int = 2000) -> LatencyResult:
    """Two measurements of one (architecture, stamp) as one: their samples pooled (the most recent
    ``keep``), so repeated measurements narrow the interval instead of replacing each other. The
    raw spread and the anchor scale are the newer measurement's."""
    if old.stamp.key != new.stamp.key or not old.samples or not new.samples:
        return new
    samples = (list(old.samples) + list(new.samples))[-keep:]
    if new.stamp.protocol == "paired":
        return paired_result(new, samples, new.anchor_ms, tolerance)
    return dataclasses.replace(summarize(samples, new.stamp, tolerance), median_ms=new.median_ms,
                               p10_ms=new.p10_ms, p90_ms=new.p90_ms, iqr_ms=new.iqr_ms, cv=new.cv)
