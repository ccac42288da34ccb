"""Latency measured by running MindSpore networks on the local device, each measurement in an
isolated worker process.

Exclusive access: the worker holds :func:`nas.runtime.devicelock.device_lock` *exclusively* on the device
for the warm-up and timing of every task (start-up and compiling run outside it). Training holds
the same lock *shared* around every step, so a measurement never overlaps a training step or
another measurement on the same device of the same host; a turnstile keeps a stream of trainings
from starving it. The lock is an ``flock`` released by the kernel if the holder dies. Across a Ray cluster,
:class:`latency.remote.RayLatencyBackend` adds a named device resource on top.

Isolation: the worker (``python -m latency.worker``) is a fresh interpreter in its own session.
If it makes no progress for ``timeout_s`` (start-up counts against the first task), the whole
process group is killed and :class:`MeasurementTimeout` is raised; if it dies,
:class:`MeasurementCrash` is raised. Finished tasks are reported before either error.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from latency.errors import (
    DeviceUnavailableError,
    MeasurementCrash,
    MeasurementError,
    MeasurementTimeout,
    StampMismatchError,
    UnbuildableSpecError,
)
from latency.pieces import Piece
from latency.result import LatencyResult, summarize
from latency.stamp import MODES, DeviceStamp, available_cores, device_name, local_stamp, parse_device
from nas.runtime.devicelock import DeviceBusyError
from nas.spec.arch import ArchSpec
from nas.spec.checks import check_choice, check_int, check_number
from nas.spec.errors import SpecError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.02


class MindSporeBackend:
    """Measure on the local ``device`` (``CPU``, ``GPU[:id]``, ``Ascend[:id]``) in GRAPH mode.

    ``resolution=None`` measures each spec at its own resolution. ``threads`` (CPU) sets
    MindSpore's CPU kernel threads and ``OMP_NUM_THREADS``; default: the cores this process may
    use. Each timed run is one forward call at ``batch``; the result is the median of the timed
    runs (see :mod:`latency.worker` for the stopping rule).
    """

    def __init__(self, device: str = "CPU", *, batch: int = 1, resolution: int | None = None,
                 threads: int | None = None, mode: str = "GRAPH", warmup: int = 10, min_repeats: int = 10,
                 max_repeats: int = 100, tolerance: float = 0.02, timeout_s: float = 300.0,
                 lock_timeout_s: float | None = 3600.0, python: str | None = None) -> None:
        self.target, self.device_id = parse_device(device)
        self.device = device_name(device)
        self.batch = check_int("batch", batch, 1)
        self.resolution = None if resolution is None else check_int("resolution", resolution, 8)
        self.threads = available_cores() if threads is None else check_int("threads", threads, 1)
        self.mode = check_choice("mode", mode, MODES)
        self.warmup = check_int("warmup", warmup, 0)
        self.min_repeats = check_int("min_repeats", min_repeats, 1)
        self.max_repeats = check_int("max_repeats", max_repeats, self.min_repeats)
        self.tolerance = check_number("tolerance", tolerance, 0.0, low_open=True)
        self.timeout_s = check_number("timeout_s", timeout_s, 0.0, low_open=True)
        self.lock_timeout_s = None if lock_timeout_s is None else check_number("lock_timeout_s", lock_timeout_s, 0.0,
                                                                               low_open=True)
        self.python = python or sys.executable
        self.launches = 0  # worker processes started (tests and benchmarks read it)

    def __repr__(self) -> str:
        return (f"MindSporeBackend(device={self.device!r}, batch={self.batch}, resolution={self.resolution}, "
                f"threads={self.threads})")

    # ----- the protocol ---------------------------------------------------------------------------

    def stamp(self, spec: ArchSpec | None = None, *, resolution: int | None = None) -> DeviceStamp:
        size = resolution or self.resolution or (spec.resolution if spec is not None else None)
        if size is None:
            raise ValueError("resolution: give a spec or a resolution (this backend has none fixed)")
        return local_stamp(self.device, threads=self.threads, batch=self.batch, resolution=size, mode=self.mode)

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self.measure_many([spec])[0]

    def measure_many(self, specs: Sequence[ArchSpec]) -> list[LatencyResult]:
        return [result for _, result in self.measure_iter(specs)]

    def measure_iter(self, specs: Sequence[ArchSpec]) -> Iterator[tuple[int, LatencyResult]]:
        """Measure ``specs`` in one worker; yield ``(index, result)`` as each finishes, so that an
        error on one spec keeps the results before it."""
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
            yield index, summarize(record["times_ms"], stamps[index])

    def measure_pieces(self, pieces: Sequence[Piece], resolution: int) -> Iterator[tuple[Piece, LatencyResult]]:
        pieces = list(pieces)
        if not pieces:
            return
        stamp = self.stamp(resolution=resolution)
        tasks = [{"id": index, "kind": piece.kind, "config": json.loads(piece.config),
                  "input_shape": list(piece.input_shape)} for index, piece in enumerate(pieces)]
        for record in self._run(tasks, stamp):
            piece = pieces[record["id"]]
            if "error" in record:
                raise self._task_error(record["error"], f"piece {piece.describe()}")
            yield piece, summarize(record["times_ms"], stamp)

    # ----- the worker -----------------------------------------------------------------------------

    def _task_error(self, error: dict[str, Any], what: str) -> Exception:
        text = f"{what} on {self.device}: {error.get('class', 'Error')}: {error.get('message', '')}"
        if error.get("type") == "busy":
            return DeviceBusyError(f"{what}: {error.get('message', '')}")
        if error.get("type") == "unbuildable":
            return UnbuildableSpecError(f"cannot build/compile {text}")
        return MeasurementError(f"measurement failed for {text}")

    def _job(self, tasks: list[dict[str, Any]], results: Path) -> dict[str, Any]:
        return {"device": self.target, "device_id": self.device_id, "threads": self.threads, "batch": self.batch,
                "mode": self.mode, "warmup": self.warmup, "min_repeats": self.min_repeats,
                "max_repeats": self.max_repeats, "tolerance": self.tolerance, "results": str(results),
                "lock_device": self.device, "lock_timeout_s": self.lock_timeout_s, "tasks": tasks}

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.setdefault("GLOG_v", "3")
        if self.target == "CPU":
            env["OMP_NUM_THREADS"] = str(self.threads)
        return env

    def _run(self, tasks: list[dict[str, Any]], stamp: DeviceStamp) -> Iterator[dict[str, Any]]:
        """Run ``tasks`` in one worker (which locks the device around each task's timing); yield each
        task's record as it finishes."""
        folder = Path(tempfile.mkdtemp(prefix="nas-latency-"))
        results = folder / "results.jsonl"
        results.touch()
        job = folder / "job.json"
        job.write_text(json.dumps(self._job(tasks, results)))
        stderr = open(folder / "stderr.txt", "w+")
        process = None
        try:
            try:
                process = subprocess.Popen([self.python, "-m", "latency.worker", str(job)], cwd=str(folder),
                                           env=self._environment(), stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
            except OSError as error:
                raise MeasurementError(f"cannot start the latency worker with {self.python!r}: {error}") from None
            self.launches += 1
            yield from self._follow(process, results, stderr, {task["id"] for task in tasks}, stamp)
            _stop(process, grace_s=10.0)  # all done: the worker exits by itself
        finally:
            if process is not None:
                _stop(process, grace_s=0.0)
            stderr.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _follow(self, process: subprocess.Popen, results: Path, stderr, pending: set[int],
                stamp: DeviceStamp) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + self.timeout_s
        offset = 0
        with open(results) as handle:
            while pending:
                exited = process.poll() is not None  # read after this, so nothing written is missed
                handle.seek(offset)
                chunk = handle.read()
                complete = chunk[:chunk.rfind("\n") + 1]
                offset += len(complete)
                for line in complete.splitlines():
                    record = json.loads(line)
                    event = record.get("event")
                    if event == "device_error":
                        raise DeviceUnavailableError(f"device {self.device} unusable: {record['class']}: "
                                                     f"{record['message']}")
                    if event == "waiting_for_device":  # lock_timeout_s, not timeout_s, bounds this wait
                        wait = self.lock_timeout_s if self.lock_timeout_s is not None else float("inf")
                        deadline = time.monotonic() + wait + self.timeout_s
                        continue
                    if event == "locked":
                        deadline = time.monotonic() + self.timeout_s
                        continue
                    if event == "ready":
                        if record["mindspore_version"] != stamp.mindspore_version:
                            raise StampMismatchError(
                                f"the worker runs MindSpore {record['mindspore_version']} but the stamp says "
                                f"{stamp.mindspore_version}; is {self.python} the interpreter you meant?")
                        continue
                    pending.discard(record["id"])
                    deadline = time.monotonic() + self.timeout_s
                    yield record
                if not pending:
                    return
                if exited:
                    code = process.returncode
                    how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                    raise MeasurementCrash(f"latency worker {how} with {len(pending)} task(s) unfinished; "
                                           f"stderr: {_tail(stderr)}")
                if time.monotonic() > deadline:
                    _stop(process, grace_s=0.0)
                    raise MeasurementTimeout(f"latency worker on {self.device} made no progress within "
                                             f"{self.timeout_s:g} s and was killed ({len(pending)} task(s) unfinished)")
                time.sleep(POLL_S)


def _tail(stderr, limit: int = 600) -> str:
    stderr.flush()
    stderr.seek(0)
    lines = [line for line in stderr.read().splitlines() if line.strip() and "Cell.__del__" not in line]
    text = " | ".join(lines)[-limit:]
    return text or "(empty)"


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """Give the worker ``grace_s`` to exit, then kill its whole process group."""
    if process.poll() is None and grace_s > 0:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait()
