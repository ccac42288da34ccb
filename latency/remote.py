"""Remote measurement: a Ray actor on the node that holds the target device.

A device host joins the Ray cluster declaring a custom resource, e.g.
``ray start --address=... --resources='{"latency_device:CPU": 1}'``. :class:`RayLatencyBackend`
starts one actor that requires one unit of that resource, so Ray places it on the device host,
and at most as many measuring actors exist as the hosts declare units (exclusive across the
cluster). Inside, the actor runs a :class:`~latency.mindspore_backend.MindSporeBackend`, so it
measures through that host's device server, which also takes the host's device lock (exclusive
against training on that host). Results carry the device host's stamp, not the caller's.

The actor is named after its resource and settings (namespace ``nas-latency``): every backend of
the same settings on the cluster, such as one per candidate in each campaign worker, reaches the
same actor, and Ray runs its calls one at a time. An actor that died (its owner ended, or it
crashed) is started again once, on the next call. Campaigns use it with ``latency.address``,
NetAdapt with ``--latency-address``, ``nas latency measure`` with ``--address``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import time
from typing import Any, Iterator, Sequence

from latency.errors import DeviceUnavailableError
from latency.mindspore_backend import MindSporeBackend
from latency.pieces import Piece
from latency.result import LatencyResult
from latency.stamp import DeviceStamp, parse_device
from nas.runtime.cluster import connect_ray, import_ray
from nas.spec.arch import ArchSpec

NAMESPACE = "nas-latency"
START_ATTEMPTS = 5  # a dead actor's name is released within a few seconds


def resource_name(device: str) -> str:
    """The custom Ray resource a device host declares for ``device``, e.g. ``latency_device:CPU``."""
    target, _ = parse_device(device)
    return f"latency_device:{target}"


@functools.lru_cache(maxsize=None)
def _actor_class():
    ray = import_ray()

    # "probe" answers while a measurement runs; every other call waits for the one before.
    @ray.remote(concurrency_groups={"probe": 1})
    class LatencyDeviceActor:
        """Holds the device resource and measures with a local MindSporeBackend."""

        def __init__(self, device: str, options: dict[str, Any]) -> None:
            self.backend = MindSporeBackend(device, **options)

        @ray.method(concurrency_group="probe")
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
    protocol, runtime, timeouts). Where this process is not connected to Ray yet, it joins
    ``address`` (a dead or unreachable address is a :class:`~nas.runtime.cluster.RayClusterError`
    naming it); in a Ray worker (a campaign's) it uses the cluster it runs on.
    """

    def __init__(self, device: str = "CPU", *, resource: str | None = None, address: str | None = None,
                 start_timeout_s: float = 120.0, piece_chunk: int = 16, **backend_options: Any) -> None:
        MindSporeBackend(device, **backend_options)  # validate the options here, not in the actor
        ray = import_ray()
        if not ray.is_initialized():
            if address is None:
                raise DeviceUnavailableError("Ray is not initialized: call ray.init(...) first or pass address=")
            connect_ray(address, num_cpus=1)
        self.device = device
        self.resource = resource or resource_name(device)
        self.piece_chunk = piece_chunk
        self.start_timeout_s = start_timeout_s
        self._options = backend_options
        digest = hashlib.sha256(json.dumps([device, backend_options], sort_keys=True, default=str).encode())
        self.name = f"{self.resource}/{digest.hexdigest()[:12]}"
        self._stamps: dict[tuple[int | None, int | None], DeviceStamp] = {}
        self._actor: Any = None
        self.host = self._start()

    def _start(self) -> dict[str, Any]:
        """Reach the named actor of these settings (starting it if none runs) and wait until it is placed.

        A name can still point at an actor that just died (the cluster has not released it yet):
        then it asks again, a few times, a second apart."""
        ray = import_ray()
        for attempt in range(START_ATTEMPTS):
            self._actor = _actor_class().options(name=self.name, namespace=NAMESPACE, get_if_exists=True,
                                                 resources={self.resource: 1}, num_cpus=0,
                                                 max_restarts=0).remote(self.device, self._options)
            try:
                return ray.get(self._actor.ready.remote(), timeout=self.start_timeout_s)
            except ray.exceptions.RayActorError as error:
                if attempt + 1 == START_ATTEMPTS:
                    self._actor = None
                    raise DeviceUnavailableError(f"the device actor {self.name!r} died {START_ATTEMPTS} times as it "
                                                 f"started: {str(error).splitlines()[0]}") from None
                time.sleep(1.0)
            except ray.exceptions.GetTimeoutError:
                break
        ray.kill(self._actor)
        self._actor = None
        raise DeviceUnavailableError(f"no Ray node offers the resource {self.resource!r} (waited "
                                     f"{self.start_timeout_s:g} s); start the device host with "
                                     f"--resources='{{\"{self.resource}\": 1}}'")

    def _call(self, method: str, *args: Any) -> Any:
        """``method`` on the actor; an actor that died since is started again, once."""
        ray = import_ray()
        if self._actor is None:
            self.host = self._start()
        try:
            return ray.get(getattr(self._actor, method).remote(*args))
        except ray.exceptions.RayActorError:
            self.host = self._start()
            return ray.get(getattr(self._actor, method).remote(*args))

    def __repr__(self) -> str:
        return f"RayLatencyBackend(device={self.device!r}, resource={self.resource!r}, host={self.host})"

    def close(self) -> None:
        """End the actor (and with it the device resource); a later call starts it again."""
        if self._actor is not None:
            import_ray().kill(self._actor)
            self._actor = None

    def __enter__(self) -> "RayLatencyBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def launches(self) -> int:
        """Device server starts of the remote backend."""
        return int(self._call("launches"))

    def stamp(self, spec: ArchSpec | None = None, *, resolution: int | None = None) -> DeviceStamp:
        memo_key = (resolution, spec.resolution if spec is not None else None)
        if memo_key not in self._stamps:
            self._stamps[memo_key] = self._call("stamp", spec, resolution)
        return self._stamps[memo_key]

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self.measure_many([spec])[0]

    def measure_iter(self, specs: Sequence[ArchSpec]) -> Iterator[tuple[int, LatencyResult]]:
        outcomes = self._call("measure_many", list(specs))
        for index, (status, value) in enumerate(outcomes):
            if status == "error":
                raise value
            yield index, value

    def measure_many(self, specs: Sequence[ArchSpec]) -> list[LatencyResult]:
        return [result for _, result in self.measure_iter(specs)]

    def measure_pieces(self, pieces: Sequence[Piece], resolution: int) -> Iterator[tuple[Piece, LatencyResult]]:
        pieces = list(pieces)
        for start in range(0, len(pieces), self.piece_chunk):
            for status, value in self._call("measure_pieces", pieces[start:start + self.piece_chunk], resolution):
                if status == "error":
                    raise value
                yield value
