"""A latency measurement: the median of repeated timed runs, its spread, and the device stamp."""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from latency.stamp import DeviceStamp
from nas.spec.checks import check_bool, check_int, check_number


@dataclass(frozen=True)
class LatencyResult:
    """One latency figure: the estimate and its ~95% confidence interval, and the raw spread.

    ``estimate_ms`` is the figure to use. Under the plain protocol it is the median of the timed
    calls; under the paired protocol it is the median ratio of candidate to anchor blocks times
    the anchor's pooled latency (:mod:`latency.protocol`). ``precise`` says whether the interval
    came within the tolerance before the time cap; an imprecise figure is flagged, never silently
    trusted. ``median_ms``, ``p10_ms``, ``p90_ms``, ``iqr_ms`` and ``cv`` describe the raw timed
    calls of the candidate, in absolute milliseconds. ``samples`` are what the estimate is made of
    (block ratios, or call times under the plain protocol): a cache pools them across measurements.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    repeats: int
    cv: float
    stamp: DeviceStamp
    estimate_ms: float = -1.0  # -1: the raw median (results made before estimates existed)
    ci_low_ms: float = 0.0
    ci_high_ms: float = 0.0
    precise: bool = False
    blocks: int = 0
    anchor_ms: float = 0.0  # the anchor's pooled latency (paired protocol)
    samples: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.estimate_ms == -1.0:
            object.__setattr__(self, "estimate_ms", self.median_ms)
        for name in ("median_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "estimate_ms", "ci_low_ms", "ci_high_ms",
                     "anchor_ms"):
            check_number(f"result.{name}", getattr(self, name), 0.0)
        check_int("result.repeats", self.repeats, 1)
        check_int("result.blocks", self.blocks, 0)
        check_bool("result.precise", self.precise)
        if not isinstance(self.stamp, DeviceStamp):
            raise ValueError(f"result.stamp: must be a DeviceStamp (got {type(self.stamp).__name__})")
        object.__setattr__(self, "samples", tuple(float(value) for value in self.samples))

    @property
    def half_width(self) -> float:
        """The interval's larger half, relative to the estimate (0.02 = +-2%)."""
        if self.estimate_ms <= 0:
            return 0.0
        return max(self.estimate_ms - self.ci_low_ms, self.ci_high_ms - self.estimate_ms) / self.estimate_ms

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stamp"] = self.stamp.to_dict()
        data["samples"] = list(self.samples) if samples else []
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencyResult":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"result: unknown key {unknown[0]!r}; allowed: {sorted(names)}")
        required = {"median_ms", "p10_ms", "p90_ms", "iqr_ms", "repeats", "cv", "stamp"}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"result: missing key {missing[0]!r}")
        fields = dict(data)
        fields["stamp"] = DeviceStamp.from_dict(fields["stamp"])
        fields["samples"] = tuple(fields.get("samples") or ())
        return cls(**fields)

    def describe(self) -> str:
        flag = "" if self.precise else ", IMPRECISE: the interval stayed wider than the tolerance"
        how = (f"{self.blocks} paired blocks against an anchor of {self.anchor_ms:.3f} ms"
               if self.stamp.protocol == "paired" else f"{self.repeats} timed calls")
        return (f"{self.estimate_ms:.3f} ms (95% CI {self.ci_low_ms:.3f}-{self.ci_high_ms:.3f}, "
                f"+-{self.half_width:.1%}; {how}; raw median {self.median_ms:.3f}, p10 {self.p10_ms:.3f}, "
                f"p90 {self.p90_ms:.3f}, cv {self.cv:.1%}{flag})")


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear-interpolation percentile of an ascending sequence."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(times_ms: Sequence[float], stamp: DeviceStamp, tolerance: float | None = None) -> LatencyResult:
    """The plain-protocol :class:`LatencyResult` of the timed calls ``times_ms``: the median,
    with the order-statistics interval of the median (``precise`` when it lies within
    ``tolerance``; without a tolerance, when an interval exists)."""
    ordered = sorted(float(t) for t in times_ms)
    if not ordered:
        raise ValueError("no timed runs to summarize")
    mean = statistics.fmean(ordered)
    cv = statistics.pstdev(ordered) / mean if mean > 0 else 0.0
    middle = statistics.median(ordered)
    interval = median_interval(ordered)
    low, high = interval if interval is not None else (ordered[0], ordered[-1])
    precise = interval is not None and (tolerance is None or converged(ordered, tolerance))
    return LatencyResult(median_ms=middle, p10_ms=percentile(ordered, 0.1),
                         p90_ms=percentile(ordered, 0.9),
                         iqr_ms=percentile(ordered, 0.75) - percentile(ordered, 0.25),
                         repeats=len(ordered), cv=cv, stamp=stamp, estimate_ms=middle, ci_low_ms=low,
                         ci_high_ms=high, precise=precise, blocks=0, samples=tuple(ordered[:2000]))


def median_interval(times: Sequence[float], z: float = 1.96) -> tuple[float, float] | None:
    """A distribution-free ~95% confidence interval of the median (order statistics), or None
    when there are too few values for one."""
    ordered = sorted(times)
    count = len(ordered)
    half = z * math.sqrt(count) / 2
    low = math.floor(count / 2 - half)  # 1-based ranks
    high = math.ceil(count / 2 + half + 1)
    if low < 1 or high > count:
        return None
    return ordered[low - 1], ordered[high - 1]


def converged(times: Sequence[float], tolerance: float) -> bool:
    """True when the median's confidence interval lies within +-``tolerance`` (relative) of it."""
    interval = median_interval(times)
    if interval is None:
        return False
    middle = statistics.median(times)
    if middle <= 0:
        return True
    return max(middle - interval[0], interval[1] - middle) <= tolerance * middle
