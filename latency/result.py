"""A latency measurement: the median of repeated timed runs, its spread, and the device stamp."""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from latency.stamp import DeviceStamp


@dataclass(frozen=True)
class LatencyResult:
    """Median latency in milliseconds with its spread over ``repeats`` timed runs."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    repeats: int
    cv: float
    stamp: DeviceStamp

    def __post_init__(self) -> None:
        for name in ("median_ms", "p10_ms", "p90_ms", "iqr_ms", "cv"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"result.{name}: must be a finite non-negative number (got {value!r})")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"result.repeats: must be a positive integer (got {self.repeats!r})")
        if not isinstance(self.stamp, DeviceStamp):
            raise ValueError(f"result.stamp: must be a DeviceStamp (got {type(self.stamp).__name__})")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stamp"] = self.stamp.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencyResult":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"result: unknown key {unknown[0]!r}; allowed: {sorted(names)}")
        missing = sorted(names - set(data))
        if missing:
            raise ValueError(f"result: missing key {missing[0]!r}")
        fields = dict(data)
        fields["stamp"] = DeviceStamp.from_dict(fields["stamp"])
        return cls(**fields)

    def describe(self) -> str:
        return (f"median {self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, "
                f"IQR {self.iqr_ms:.3f}, cv {self.cv:.1%}, n={self.repeats})")


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear-interpolation percentile of an ascending sequence."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(times_ms: Sequence[float], stamp: DeviceStamp) -> LatencyResult:
    """The :class:`LatencyResult` of the timed runs ``times_ms``."""
    ordered = sorted(float(t) for t in times_ms)
    if not ordered:
        raise ValueError("no timed runs to summarize")
    mean = statistics.fmean(ordered)
    cv = statistics.pstdev(ordered) / mean if mean > 0 else 0.0
    return LatencyResult(median_ms=statistics.median(ordered), p10_ms=percentile(ordered, 0.1),
                         p90_ms=percentile(ordered, 0.9),
                         iqr_ms=percentile(ordered, 0.75) - percentile(ordered, 0.25),
                         repeats=len(ordered), cv=cv, stamp=stamp)


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
