"""The device server process: ``python -m latency.worker --serve NAME SETTINGS_JSON``.

One long-lived process per (host, device, runtime, threads, batch, mode), started on demand by
:class:`latency.server.DeviceServer` and reused by every measurement on that host: a campaign's
workers, a NetAdapt run, a look-up-table build, one CLI call. It listens on an abstract Unix
socket, serves one request at a time, and exits after ``idle_s`` without requests, after
``max_tasks`` tasks or above ``max_rss_mb`` of memory (the next request starts a fresh one).
Compiled networks are kept in a small LRU (the anchor always), the rest freed, so memory stays
bounded. A crash or a hang costs only the measurement in flight: the client kills the process
and the next request starts another.

Per task: build the cell, compile it (and, for ONNX Runtime, export it and load the session)
outside the device lock, then hold the lock *exclusively* while timing it with the request's
protocol (:mod:`latency.protocol`). Records are JSON lines written to the socket as each task
finishes, so the client keeps every finished measurement if the server later dies.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import mindspore as ms
import numpy as np
from mindspore import nn

from latency.protocol import ANCHOR, ProtocolSettings, time_paired, time_plain
from nas.models.blocks import ConvBnAct, Layer, make_activation
from nas.models.builder import build_network
from nas.models.onnx import OnnxExportError, export_onnx
from nas.runtime.devicelock import DeviceBusyError, device_lock
from nas.spec.arch import ArchSpec
from nas.spec.layers import LayerPlan
from search_spaces import references

EXIT_DEVICE = 3
EXIT_BAD_JOB = 2
ANCHOR_HISTORY = 2000  # anchor block medians kept per resolution
# A look-up-table piece times for at most this long: a table sums hundreds of them under a
# calibration, and a piece of 0.1 ms rarely reaches a 2% interval at all (it would time until
# max_seconds, 20-30 s each, for a table of hours).
PIECE_MAX_SECONDS = 3.0


def _setup_device(job: dict[str, Any]) -> str:
    target, device_id = job["device"], job.get("device_id")
    if target != "CPU":
        module = {"GPU": "gpu", "Ascend": "ascend"}[target]
        checker = getattr(getattr(ms.device_context, module, None), "is_available", None)
        if checker is None or not checker():
            raise RuntimeError(f"device {target} is not available in this MindSpore build on this host "
                               f"(MindSpore {ms.__version__})")
    ms.set_context(mode=ms.GRAPH_MODE if job.get("mode", "GRAPH") == "GRAPH" else ms.PYNATIVE_MODE)
    if device_id is None:
        ms.set_device(target)
    else:
        ms.set_device(target, device_id)
    if target == "CPU":
        ms.device_context.cpu.op_tuning.threads_num(int(job["threads"]))
    return ms.__version__


def _head_cell(config: dict[str, Any]):


    head = config["head"]

    class HeadCell(nn.Cell):
        """The head as ArchNet runs it in inference: conv + BN + act, pool, hidden, classifier."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = ConvBnAct(config["in_channels"], head["channels"], (1,), act=head["act"],
                                  bn_momentum=config["bn_momentum"], bn_eps=config["bn_eps"])
            features = head["channels"]
            self.has_hidden = head.get("hidden") is not None
            if self.has_hidden:
                self.hidden = nn.Dense(features, head["hidden"])
                self.hidden_act = make_activation(head["act"])
                features = head["hidden"]
            self.classifier = nn.Dense(features, config["num_classes"])

        def construct(self, x):
            x = self.conv(x).mean(axis=(2, 3))
            if self.has_hidden:
                x = self.hidden_act(self.hidden(x))
            return self.classifier(x)

    return HeadCell()


def _overhead_cell():

    class Overhead(nn.Cell):
        def construct(self, x):
            return x * 2.0

    return Overhead()


def build_task_cell(task: dict[str, Any], batch: int):
    """The cell and its input tensor for one task."""


    kind = task["kind"]
    if kind == "network":
        spec = ArchSpec.from_dict(task["spec"])
        cell = build_network(spec, seed=0)
        shape = (spec.in_channels, task["resolution"], task["resolution"])
    else:
        config = task["config"]
        shape = tuple(task["input_shape"])
        if kind == "layer":
            plan = dict(config["plan"])
            plan["kernel"] = tuple(plan["kernel"])
            cell = Layer(LayerPlan(**plan), padding=config["padding"], bn_momentum=config["bn_momentum"],
                         bn_eps=config["bn_eps"])
        elif kind == "stem":
            stem = config["stem"]
            cell = ConvBnAct(config["in_channels"], stem["channels"], (stem["kernel"],), stem["stride"],
                             act=stem["act"], padding=stem["padding"], bn_momentum=config["bn_momentum"],
                             bn_eps=config["bn_eps"])
        elif kind == "head":
            cell = _head_cell(config)
        elif kind == "overhead":
            cell = _overhead_cell()
        else:
            raise ValueError(f"unknown task kind {kind!r}")
    cell.set_train(False)
    data = np.random.RandomState(0).rand(batch, *shape).astype(np.float32)
    return cell, ms.Tensor(data)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _anchor_task(resolution: int) -> dict[str, Any]:
    spec = references.get(ANCHOR).replace(resolution=resolution, name=f"anchor_{ANCHOR}")
    return {"id": "anchor", "kind": "network", "spec": spec.to_dict(), "resolution": resolution}


class Prepared:
    """A compiled task, ready to call: MindSpore's cell, or an ONNX Runtime session of its export."""

    def __init__(self, task: dict[str, Any], settings: dict[str, Any], scratch: Path) -> None:
        cell, inputs = build_task_cell(task, int(settings["batch"]))
        self.sync = None if settings["device"] == "CPU" else ms.runtime.synchronize
        if settings["runtime"] == "onnxruntime":
            import onnxruntime as ort  # heavy and optional: only an onnxruntime server loads it

            path = export_onnx(cell, inputs, scratch / f"task_{abs(hash(json.dumps(task, sort_keys=True)))}.onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = int(settings["threads"])
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            path.unlink(missing_ok=True)
            feed = {session.get_inputs()[0].name: inputs.asnumpy()}
            self.call: Callable[[], Any] = functools.partial(session.run, None, feed)
            del cell
        else:
            self.call = functools.partial(cell, inputs)
            self._keep = (cell, inputs)
        self.call()  # compiles in GRAPH mode; ONNX Runtime's first run allocates
        if self.sync is not None:
            self.sync()


class Server:
    """The state of one device server: its settings, compiled tasks and the anchor's history."""

    def __init__(self, settings: dict[str, Any], scratch: Path) -> None:
        self.settings = settings
        self.scratch = scratch
        self.cells: OrderedDict[str, Prepared] = OrderedDict()
        self.anchors: dict[int, Prepared] = {}
        self.anchor_blocks: dict[int, list[float]] = {}
        self.served = 0

    def prepared(self, task: dict[str, Any]) -> Prepared:
        key = json.dumps({k: v for k, v in task.items() if k != "id"}, sort_keys=True)
        if key in self.cells:
            self.cells.move_to_end(key)
            return self.cells[key]
        ready = Prepared(task, self.settings, self.scratch)
        self.cells[key] = ready
        while len(self.cells) > int(self.settings.get("keep_cells", 4)):  # bounded memory: evict the oldest
            self.cells.popitem(last=False)
            gc.collect()
        return ready

    def anchor(self, resolution: int) -> Prepared:
        if resolution not in self.anchors:
            self.anchors[resolution] = Prepared(_anchor_task(resolution), self.settings, self.scratch)
        return self.anchors[resolution]

    def run_task(self, task: dict[str, Any], request: dict[str, Any],
                 emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Measure one task; the record to send (times and ratios, or a classified error)."""
        started = time.perf_counter()
        settings = ProtocolSettings(**request["protocol"])
        if task.get("kind", "network") != "network":  # a table piece: many are summed under a calibration
            settings = dataclasses.replace(settings, max_seconds=min(settings.max_seconds, PIECE_MAX_SECONDS))
        resolution = int(task.get("resolution") or request.get("resolution") or 224)
        try:
            ready = self.prepared(task)
            anchor = self.anchor(resolution) if settings.protocol == "paired" else None
        except OnnxExportError as error:
            return {"id": task["id"], "error": {"type": "unbuildable", "class": type(error).__name__,
                                                "message": str(error)}}
        except Exception as error:  # noqa: BLE001 - reported to the caller, by class, with the message
            return {"id": task["id"], "error": {"type": "unbuildable", "class": type(error).__name__,
                                                "message": " ".join(str(error).split())[:2000]}}
        compile_s = time.perf_counter() - started
        record: dict[str, Any] = {"id": task["id"], "compile_s": compile_s}
        try:
            emit({"event": "waiting_for_device", "id": task["id"]})
            with device_lock(request["lock_device"], exclusive=True, timeout=request.get("lock_timeout_s")):
                emit({"event": "locked", "id": task["id"]})
                if anchor is None:
                    record["times_ms"] = time_plain(ready.call, ready.sync, settings)
                else:
                    timing = time_paired(ready.call, anchor.call, ready.sync, settings)
                    record.update(times_ms=timing.candidate_times, ratios=timing.ratios,
                                  anchor_blocks=timing.anchor_blocks, precise=timing.precise,
                                  block_calls=timing.block_calls)
        except DeviceBusyError as error:
            return {"id": task["id"], "error": {"type": "busy", "class": type(error).__name__, "message": str(error)}}
        except Exception as error:  # noqa: BLE001
            return {"id": task["id"], "error": {"type": "runtime", "class": type(error).__name__,
                                                "message": " ".join(str(error).split())[:2000]}}
        if anchor is not None:
            history = self.anchor_blocks.setdefault(resolution, [])
            history += record["anchor_blocks"]
            del history[:-ANCHOR_HISTORY]
            record["anchor_history"] = list(history)
        self.served += 1
        record["wall_s"] = time.perf_counter() - started
        record["rss_mb"] = _rss_mb()
        return record

    def status(self) -> dict[str, Any]:
        return {"event": "status", "pid": os.getpid(), "served": self.served, "rss_mb": _rss_mb(),
                "cells": len(self.cells), "anchors": sorted(self.anchors), "settings": self.settings}

    def worn_out(self) -> bool:
        return (self.served >= int(self.settings.get("max_tasks", 500))
                or _rss_mb() > float(self.settings.get("max_rss_mb", 4096)))


def _send(connection: socket.socket, record: dict[str, Any]) -> None:
    connection.sendall((json.dumps(record) + "\n").encode())


def _read_request(connection: socket.socket, limit: int = 64 * 2**20) -> dict[str, Any]:
    connection.settimeout(30.0)
    data = b""
    while not data.endswith(b"\n"):  # bounded by ``limit`` and the socket timeout
        chunk = connection.recv(1 << 16)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("request too large")
    return json.loads(data.decode() or "{}")


def _handle(server: Server, connection: socket.socket, version: str) -> bool:
    """Serve one connection; False when the server should stop."""
    request = _read_request(connection)
    connection.settimeout(None)
    op = request.get("op")
    _send(connection, {"event": "ready", "pid": os.getpid(), "mindspore_version": version})
    if op == "ping":
        _send(connection, server.status())
        return True
    if op == "stop":
        _send(connection, {"event": "stopping"})
        return False
    if op != "measure":
        _send(connection, {"event": "error", "message": f"unknown op {op!r}"})
        return True
    for task in request["tasks"]:
        try:
            record = server.run_task(task, request, lambda event: _send(connection, event))
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:  # noqa: BLE001 - a bug here must still reach the caller
            record = {"id": task.get("id"), "error": {"type": "internal", "class": "WorkerError",
                                                      "message": traceback.format_exc()[-2000:]}}
        _send(connection, record)
    _send(connection, {**server.status(), "event": "done"})
    return not server.worn_out()


def serve(name: str, settings: dict[str, Any]) -> int:
    """Listen on the abstract socket ``name`` and serve until idle, stopped or worn out."""
    try:
        version = _setup_device(settings)
    except Exception as error:  # noqa: BLE001
        print(f"device_error {type(error).__name__}: {' '.join(str(error).split())[:2000]}", file=sys.stderr)
        return EXIT_DEVICE
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + name)
    except OSError:  # another server took the name first: it serves, this one leaves
        return 0
    listener.listen(16)
    listener.settimeout(float(settings.get("idle_s", 900.0)))
    scratch = Path(tempfile.mkdtemp(prefix="nas-server-"))
    server = Server(settings, scratch)
    info = Path(settings["info_path"]) if settings.get("info_path") else None
    if info is not None:
        info.write_text(json.dumps({"pid": os.getpid(), "name": name, "started": time.time(), "settings": settings}))
    try:
        while True:  # bounded by idle_s, max_tasks and max_rss_mb
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                return 0
            with connection:
                try:
                    keep_going = _handle(server, connection, version)
                except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
                    keep_going = True  # the client went away or sent garbage: serve the next one
            if not keep_going:
                return 0
    finally:
        listener.close()
        shutil.rmtree(scratch, ignore_errors=True)
        if info is not None:
            try:
                if json.loads(info.read_text()).get("pid") == os.getpid():
                    info.unlink()
            except (OSError, ValueError):
                pass


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "--serve":
        print("usage: python -m latency.worker --serve NAME SETTINGS_JSON", file=sys.stderr)
        return EXIT_BAD_JOB
    try:
        settings = json.loads(argv[2])
    except ValueError as error:
        print(f"latency server: bad settings: {error}", file=sys.stderr)
        return EXIT_BAD_JOB
    return serve(argv[1], settings)


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    with contextlib.suppress(OSError):  # already a session leader
        os.setsid()  # a session of its own: whoever started it may end its own process group
    code = main(sys.argv[1:])
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip MindSpore's noisy interpreter teardown
