"""Remote measurement: a Ray actor on the node that holds the target device.

A device host joins the Ray cluster declaring a custom resource, e.g.
``ray start --address=... --resources='{"latency_device:CPU": 1}'``. :class:`RayLatencyBackend`
starts one actor that requires one unit of that resource, so Ray places it on the device host,
and at most as many measuring actors exist as the hosts declare units (exclusive across the
cluster). Inside, the actor runs a :class:`~latency.mindspore_backend.MindSporeBackend`, which
also takes the host's device lock (exclusive against training on that host). Results carry the
device host's stamp, not the caller's.

Campaigns and NetAdapt do not use it yet: they measure on the host they run on, through the
device lock. It serves scripts that measure on a remote device host.
"""
from __future__ import annotations

import functools
import os
import socket
from typing import Any, Iterator, Sequence

from latency.errors import DeviceUnavailableError
from latency.mindspore_backend import MindSporeBackend
from latency.pieces import Piece
from latency.result import LatencyResult
from latency.stamp import DeviceStamp, parse_device
from nas.runtime.cluster import connect_ray, import_ray
from nas.spec.arch import ArchSpec


def resource_name(device: str) -> str:
    """The custom Ray resource a device host declares for ``device``, e.g. ``latency_device:CPU``."""
    target, _ = parse_device(device)
    return f"latency_device:{target}"


@functools.lru_cache(maxsize=None)
def _actor_class():
    ray = import_ray()

    @ray.remote
    class LatencyDeviceActor:
        """Holds the device resource and measures with a local MindSporeBackend."""

        def __init__(self, device: str, options: dict[str, Any]) -> None:
            self.backend = MindSporeBackend(device, **options)

        def ready(self) -> dict[str, Any]:
            return {"host": socket.gethostname(), "pid": os.getpid()}

        def stamp(self, spec: ArchSpec | None, resolution: int | None) -> DeviceStamp:
            return self.backend.stamp(spec, resolution=resolution)

        def launches(self) -> int:
            return self.backend.launches

        def measure_many(self, specs: list[ArchSpec]) -> list[tuple[str, Any]]:
            """``("ok", result)`` per finished spec, then ``("error", exception)`` if one failed."""
            out: list[tuple[str, Any]] = []
            try:
                for _, result in self.backend.measure_iter(specs):
                    out.append(("ok", result))
            except Exception as error:  # noqa: BLE001 - returned, re-raised by the caller
                out.append(("error", error))
            return out

        def measure_pieces(self, pieces: list[Piece], resolution: int) -> list[tuple[str, Any]]:
            out: list[tuple[str, Any]] = []
            try:
                for piece, result in self.backend.measure_pieces(pieces, resolution):
                    out.append(("ok", (piece, result)))
            except Exception as error:  # noqa: BLE001
                out.append(("error", error))
            return out

    return LatencyDeviceActor


class RayLatencyBackend:
    """Measure ``device`` on whichever Ray node offers ``resource`` (default ``latency_device:<target>``).

    ``backend_options`` go to the actor's :class:`MindSporeBackend` (batch, resolution, threads,
    repeats, timeouts). Ray must be initialized (``ray.init(...)``) unless ``address`` is given.
    """

    def __init__(self, device: str = "CPU", *, resource: str | None = None, address: str | None = None,
                 start_timeout_s: float = 120.0, piece_chunk: int = 16, **backend_options: Any) -> None:
        MindSporeBackend(device, **backend_options)  # validate the options here, not in the actor
        ray = import_ray()
        if address is not None:
            connect_ray(address, num_cpus=1)
        elif not ray.is_initialized():
            raise DeviceUnavailableError("Ray is not initialized: call ray.init(...) first or pass address=")
        self.device = device
        self.resource = resource or resource_name(device)
        self.piece_chunk = piece_chunk
        self._stamps: dict[tuple[int | None, int | None], DeviceStamp] = {}
        self._actor = _actor_class().options(resources={self.resource: 1}, num_cpus=0,
                                             max_restarts=0).remote(device, backend_options)
        try:
            self.host = ray.get(self._actor.ready.remote(), timeout=start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.kill(self._actor)
            raise DeviceUnavailableError(f"no Ray node offers the resource {self.resource!r} (waited "
                                         f"{start_timeout_s:g} s); start the device host with "
                                         f"--resources='{{\"{self.resource}\": 1}}'") from None

    def __repr__(self) -> str:
        return f"RayLatencyBackend(device={self.device!r}, resource={self.resource!r}, host={self.host})"

    def close(self) -> None:
        """Release the actor (and with it the device resource)."""
        if self._actor is not None:
            import_ray().kill(self._actor)
            self._actor = None

    def __enter__(self) -> "RayLatencyBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def launches(self) -> int:
        """Worker processes the remote backend has started."""
        return import_ray().get(self._actor.launches.remote())

    def stamp(self, spec: ArchSpec | None = None, *, resolution: int | None = None) -> DeviceStamp:
        memo_key = (resolution, spec.resolution if spec is not None else None)
        if memo_key not in self._stamps:
            self._stamps[memo_key] = import_ray().get(self._actor.stamp.remote(spec, resolution))
        return self._stamps[memo_key]

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self.measure_many([spec])[0]

    def measure_iter(self, specs: Sequence[ArchSpec]) -> Iterator[tuple[int, LatencyResult]]:
        outcomes = import_ray().get(self._actor.measure_many.remote(list(specs)))
        for index, (status, value) in enumerate(outcomes):
            if status == "error":
                raise value
            yield index, value

    def measure_many(self, specs: Sequence[ArchSpec]) -> list[LatencyResult]:
        return [result for _, result in self.measure_iter(specs)]

    def measure_pieces(self, pieces: Sequence[Piece], resolution: int) -> Iterator[tuple[Piece, LatencyResult]]:
        pieces = list(pieces)
        for start in range(0, len(pieces), self.piece_chunk):
            outcomes = import_ray().get(self._actor.measure_pieces.remote(pieces[start:start + self.piece_chunk],
                                                                    resolution))
            for status, value in outcomes:
                if status == "error":
                    raise value
                yield value
