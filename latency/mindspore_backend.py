"""Latency measured by running our networks on the local device, through the host's device server.

Every measurement goes to :class:`latency.server.DeviceServer`: one long-lived process per
(host, device, runtime, threads, batch, mode), started on demand and shared by every process on
the host (:mod:`latency.worker` is that process). It times with the paired protocol by default
(:mod:`latency.protocol`): the candidate interleaved with an anchor network, the estimate a
ratio at the anchor's pooled scale, with a bootstrap interval and a precision flag.

Runtimes: ``mindspore`` runs the MindSpore network itself (GRAPH mode); ``onnxruntime`` runs its
ONNX export in ONNX Runtime (:class:`OnnxRuntimeBackend`), the way a CPU deployment would.

Exclusive access: the server holds :func:`nas.runtime.devicelock.device_lock` *exclusively* on the
device while it times (start-up, compiling and exporting stay outside it). Training holds the
same lock *shared*, so a measurement never overlaps training on the same device of the same host.

Isolation: a server that crashes fails only the measurement in flight (:class:`MeasurementCrash`);
one that makes no progress within ``timeout_s`` is killed (:class:`MeasurementTimeout`). The next
measurement starts a fresh server. Finished tasks are reported before either error.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from latency.anchors import AnchorStore
from latency.errors import (
    DeviceUnavailableError,
    MeasurementError,
    UnbuildableSpecError,
)
from latency.pieces import Piece
from latency.protocol import ProtocolSettings, paired_result
from latency.result import LatencyResult, summarize
from latency.server import DeviceServer, ServerSettings
from latency.stamp import (
    MODES,
    PROTOCOLS,
    RUNTIMES,
    DeviceStamp,
    available_cores,
    device_name,
    local_stamp,
    parse_device,
)
from nas.runtime.devicelock import DeviceBusyError
from nas.spec.arch import ArchSpec
from nas.spec.checks import check_bool, check_choice, check_int, check_number
from nas.spec.errors import MissingDependencyError, SpecError
from nas.spec.optional import install_hint


class MindSporeBackend:
    """Measure on the local ``device`` (``CPU``, ``GPU[:id]``, ``Ascend[:id]``).

    ``resolution=None`` measures each spec at its own resolution. ``threads`` (CPU) sets the
    runtime's threads and ``OMP_NUM_THREADS``; default: the cores this process may use.
    ``protocol`` is ``paired`` (default) or ``plain``; ``tolerance`` is the relative half-width
    of the ~95% interval to reach, ``max_seconds`` the time cap of one paired measurement.
    ``runtime`` is ``mindspore`` or ``onnxruntime``. ``server=False`` starts a private server
    per call and stops it after (the fresh-process design, for comparison).
    """

    def __init__(self, device: str = "CPU", *, batch: int = 1, resolution: int | None = None,
                 threads: int | None = None, mode: str = "GRAPH", warmup: int = 10, min_repeats: int = 10,
                 max_repeats: int = 100, tolerance: float = 0.02, timeout_s: float = 300.0,
                 lock_timeout_s: float | None = 3600.0, python: str | None = None, protocol: str = "paired",
                 runtime: str = "mindspore", max_seconds: float = 30.0, block_calls: int | None = None,
                 min_blocks: int = 8, server: bool = True, anchor_store: str | Path | None = None) -> None:
        self.target, self.device_id = parse_device(device)
        self.device = device_name(device)
        self.batch = check_int("batch", batch, 1)
        self.resolution = None if resolution is None else check_int("resolution", resolution, 8)
        self.threads = available_cores() if threads is None else check_int("threads", threads, 1)
        self.mode = check_choice("mode", mode, MODES)
        self.runtime = check_choice("runtime", runtime, RUNTIMES)
        if self.runtime == "onnxruntime" and self.target != "CPU":
            raise DeviceUnavailableError(f"runtime 'onnxruntime' measures CPU targets; use runtime 'mindspore' "
                                         f"for {self.device}")
        if self.runtime == "onnxruntime":
            _require_onnxruntime()
        self.protocol = check_choice("protocol", protocol, PROTOCOLS)
        self.settings = ProtocolSettings(
            protocol=self.protocol, warmup=check_int("warmup", warmup, 0),
            min_repeats=check_int("min_repeats", min_repeats, 1),
            max_repeats=check_int("max_repeats", max_repeats, min_repeats if isinstance(min_repeats, int) else 1),
            tolerance=check_number("tolerance", tolerance, 0.0, low_open=True),
            block_calls=None if block_calls is None else check_int("block_calls", block_calls, 1),
            min_blocks=check_int("min_blocks", min_blocks, 2),
            max_seconds=check_number("max_seconds", max_seconds, 0.0, low_open=True))
        self.warmup, self.min_repeats, self.max_repeats = warmup, min_repeats, max_repeats
        self.tolerance = tolerance
        self.timeout_s = check_number("timeout_s", timeout_s, 0.0, low_open=True)
        self.lock_timeout_s = None if lock_timeout_s is None else check_number("lock_timeout_s", lock_timeout_s, 0.0,
                                                                               low_open=True)
        self.anchor_store = anchor_store
        self.server = DeviceServer(ServerSettings(self.target, self.device_id, self.threads, self.batch, self.mode,
                                                  self.runtime), python=python, timeout_s=self.timeout_s,
                                   lock_timeout_s=self.lock_timeout_s, private=not check_bool("server", server))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(device={self.device!r}, batch={self.batch}, resolution={self.resolution}, "
                f"threads={self.threads}, runtime={self.runtime!r}, protocol={self.protocol!r})")

    def __getstate__(self) -> dict[str, Any]:  # travels to a Ray worker as its settings
        return dict(self.__dict__)

    @property
    def launches(self) -> int:
        """Device servers this backend started (tests and benchmarks read it)."""
        return self.server.launches

    # ----- the protocol ---------------------------------------------------------------------------

    def stamp(self, spec: ArchSpec | None = None, *, resolution: int | None = None) -> DeviceStamp:
        size = resolution or self.resolution or (spec.resolution if spec is not None else None)
        if size is None:
            raise ValueError("resolution: give a spec or a resolution (this backend has none fixed)")
        return local_stamp(self.device, threads=self.threads, batch=self.batch, resolution=size, mode=self.mode,
                           runtime=self.runtime, protocol=self.protocol)

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self.measure_many([spec])[0]

    def measure_many(self, specs: Sequence[ArchSpec]) -> list[LatencyResult]:
        return [result for _, result in self.measure_iter(specs)]

    def measure_iter(self, specs: Sequence[ArchSpec]) -> Iterator[tuple[int, LatencyResult]]:
        """Measure ``specs`` through the server; yield ``(index, result)`` as each finishes, so
        that an error on one spec keeps the results before it."""
        specs = list(specs)
        for index, spec in enumerate(specs):
            if not isinstance(spec, ArchSpec):
                raise SpecError(f"specs[{index}]", type(spec).__name__, "must be an ArchSpec")
        if not specs:
            return
        stamps = [self.stamp(spec) for spec in specs]
        tasks = [{"id": index, "kind": "network", "spec": spec.to_dict(), "resolution": stamp.resolution}
                 for index, (spec, stamp) in enumerate(zip(specs, stamps))]
        for record in self._run(tasks, stamps[0]):
            index = record["id"]
            if "error" in record:
                spec = specs[index]
                raise self._task_error(record["error"], f"spec {spec.name!r} (arch_id {spec.arch_id})")
            yield index, self._result(record, stamps[index])

    def measure_pieces(self, pieces: Sequence[Piece], resolution: int) -> Iterator[tuple[Piece, LatencyResult]]:
        pieces = list(pieces)
        if not pieces:
            return
        stamp = self.stamp(resolution=resolution)
        tasks = [{"id": index, "kind": piece.kind, "config": json.loads(piece.config),
                  "input_shape": list(piece.input_shape), "resolution": resolution}
                 for index, piece in enumerate(pieces)]
        for record in self._run(tasks, stamp):
            piece = pieces[record["id"]]
            if "error" in record:
                raise self._task_error(record["error"], f"piece {piece.describe()}")
            yield piece, self._result(record, stamp)

    def _result(self, record: dict[str, Any], stamp: DeviceStamp) -> LatencyResult:
        if "ratios" not in record:
            return summarize(record["times_ms"], stamp, self.settings.tolerance)
        raw = summarize(record["times_ms"], stamp)
        store = AnchorStore(self.anchor_store)
        try:
            store.add(stamp, record["anchor_blocks"])
            scale = store.pooled(stamp)
        finally:
            store.close()
        return paired_result(raw, record["ratios"], scale, self.settings.tolerance)

    # ----- the server -----------------------------------------------------------------------------

    def _task_error(self, error: dict[str, Any], what: str) -> Exception:
        text = f"{what} on {self.device}: {error.get('class', 'Error')}: {error.get('message', '')}"
        if error.get("type") == "busy":
            return DeviceBusyError(f"{what}: {error.get('message', '')}")
        if error.get("type") == "unbuildable":
            return UnbuildableSpecError(f"cannot build/compile {text}")
        return MeasurementError(f"measurement failed for {text}")

    def _run(self, tasks: list[dict[str, Any]], stamp: DeviceStamp) -> Iterator[dict[str, Any]]:
        """Run ``tasks`` on the server (which locks the device around each task's timing); yield
        each task's record as it finishes."""
        request = {"op": "measure", "tasks": tasks, "protocol": self.settings.to_dict(), "lock_device": self.device,
                   "lock_timeout_s": self.lock_timeout_s}
        pending = {task["id"] for task in tasks}
        for record in self.server.request(request, expected_version=stamp.mindspore_version):
            if record.get("event") == "error":
                raise MeasurementError(f"the latency server refused the request: {record.get('message')}")
            if record.get("event") == "done":
                break
            if "id" not in record:
                raise MeasurementError(f"the latency server sent {str(record)[:300]}")
            pending.discard(record["id"])
            yield record
        if pending:
            raise MeasurementError(f"the latency server finished with {len(pending)} task(s) unanswered")


class OnnxRuntimeBackend(MindSporeBackend):
    """Measure the ONNX export of each network in ONNX Runtime on the CPU (see the module
    docstring); the stamp records ONNX Runtime's version, threads and execution provider."""

    def __init__(self, device: str = "CPU", **options: Any) -> None:
        super().__init__(device, **{**options, "runtime": "onnxruntime"})


def _require_onnxruntime() -> None:
    if importlib.util.find_spec("onnxruntime") is None:
        raise MissingDependencyError(install_hint("onnxruntime"))
