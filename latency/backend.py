"""The backend interface every latency source implements (one contract test suite checks them all)."""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence, runtime_checkable

from latency.pieces import Piece
from latency.result import LatencyResult
from latency.stamp import DeviceStamp
from nas.spec.arch import ArchSpec


@runtime_checkable
class LatencyBackend(Protocol):
    """Measures the latency of whole networks on one device under one stamp.

    ``stamp(spec)`` is cheap and never measures; ``measure(spec).stamp == stamp(spec)``.
    Results taken under different stamps must never be mixed.
    """

    def stamp(self, spec: ArchSpec | None = None, *, resolution: int | None = None) -> DeviceStamp:
        """The stamp a measurement of ``spec`` (or any spec at ``resolution``) would carry."""
        ...

    def measure(self, spec: ArchSpec) -> LatencyResult:
        """Measure ``spec`` end to end."""
        ...

    def measure_many(self, specs: Sequence[ArchSpec]) -> list[LatencyResult]:
        """Measure several specs, in order (a backend may share one worker among them)."""
        ...


@runtime_checkable
class PieceBackend(LatencyBackend, Protocol):
    """A backend that can also time single pieces (stem, layer, head) for look-up tables."""

    def measure_pieces(self, pieces: Sequence[Piece], resolution: int) -> Iterator[tuple[Piece, LatencyResult]]:
        """Time each piece on its own; yields as each finishes, so a failure keeps the finished ones."""
        ...
