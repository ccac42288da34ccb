"""The isolated measurement worker: ``python -m latency.worker JOB.json``.

:class:`latency.mindspore_backend.MindSporeBackend` starts one of these per measurement (or per
batch of look-up-table pieces), so that a crash, a hang or a leak in MindSpore can never take
down the caller. The job names the device, the timing protocol and a list of tasks; the worker
appends one JSON line per finished task to the job's results file (flushed at once), so the
caller keeps every finished measurement even if the worker later dies.

Timing protocol, per task: build the cell, compile it (the first call in GRAPH mode), then, holding
the device lock exclusively, run ``warmup`` untimed calls and timed calls until the median's ~95%
confidence interval is within ``tolerance`` of it (after at least ``min_repeats``) or
``max_repeats`` is reached. Start-up and compiling stay outside the lock: they time nothing, and
training on the same device (which holds the lock shared, step by step) need not wait for them.
"""
from __future__ import annotations

import functools
import gc
import json
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable

import mindspore as ms
import numpy as np
from mindspore import nn

from latency.result import converged
from nas.models.blocks import ConvBnAct, Layer, make_activation
from nas.models.builder import build_network
from nas.runtime.devicelock import DeviceBusyError, device_lock
from nas.spec.arch import ArchSpec
from nas.spec.layers import LayerPlan

EXIT_DEVICE = 3
EXIT_BAD_JOB = 2
EXIT_ORPHANED = 4


def _emit(handle, record: dict[str, Any]) -> None:
    handle.write(json.dumps(record) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


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


def time_cell(call: Callable[[], Any], sync: Callable[[], None] | None, job: dict[str, Any]) -> list[float]:
    """Warm up, then time ``call`` until converged or ``max_repeats``; milliseconds per call."""
    for _ in range(int(job["warmup"])):
        call()
    if sync is not None:
        sync()
    times: list[float] = []
    minimum, maximum, tolerance = int(job["min_repeats"]), int(job["max_repeats"]), float(job["tolerance"])
    clock = time.perf_counter
    while len(times) < maximum:
        start = clock()
        call()
        if sync is not None:
            sync()
        times.append((clock() - start) * 1e3)
        if len(times) >= minimum and converged(times, tolerance):
            break
    return times


def run_task(task: dict[str, Any], job: dict[str, Any],
             emit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure one task; the record to write (times, or a classified error). ``emit`` reports
    progress events (waiting for the device, holding it)."""
    started = time.perf_counter()
    try:
        cell, inputs = build_task_cell(task, int(job["batch"]))
        sync = None if job["device"] == "CPU" else ms.runtime.synchronize
        cell(inputs)  # compiles in GRAPH mode
        if sync is not None:
            sync()
    except Exception as error:  # noqa: BLE001 - reported to the caller, by class, with the message
        return {"id": task["id"], "error": {"type": "unbuildable", "class": type(error).__name__,
                                            "message": " ".join(str(error).split())[:2000]}}
    compile_s = time.perf_counter() - started
    try:
        if emit is not None:
            emit({"event": "waiting_for_device", "id": task["id"]})
        with device_lock(job["lock_device"], exclusive=True, timeout=job.get("lock_timeout_s")):
            if emit is not None:
                emit({"event": "locked", "id": task["id"]})
            times = time_cell(functools.partial(cell, inputs), sync, job)
    except DeviceBusyError as error:
        return {"id": task["id"], "error": {"type": "busy", "class": type(error).__name__, "message": str(error)}}
    except Exception as error:  # noqa: BLE001
        return {"id": task["id"], "error": {"type": "runtime", "class": type(error).__name__,
                                            "message": " ".join(str(error).split())[:2000]}}
    finally:
        del cell, inputs
        gc.collect()
    return {"id": task["id"], "times_ms": times, "compile_s": compile_s,
            "wall_s": time.perf_counter() - started}


def watch_parent(poll_s: float = 1.0) -> None:
    """Exit when the process that started this worker goes away (a cancelled campaign task), so an
    orphaned worker never keeps measuring or holding the device lock."""

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m latency.worker JOB.json", file=sys.stderr)
        return EXIT_BAD_JOB
    try:
        with open(argv[0]) as handle:
            job = json.load(handle)
        results_path = job["results"]
        tasks = job["tasks"]
    except (OSError, ValueError, KeyError) as error:
        print(f"latency worker: bad job file {argv[0]}: {error}", file=sys.stderr)
        return EXIT_BAD_JOB
    with open(results_path, "a") as out:
        try:
            version = _setup_device(job)
        except Exception as error:  # noqa: BLE001
            _emit(out, {"event": "device_error", "class": type(error).__name__,
                        "message": " ".join(str(error).split())[:2000]})
            return EXIT_DEVICE
        _emit(out, {"event": "ready", "pid": os.getpid(), "mindspore_version": version})
        watch_parent()
        for task in tasks:
            try:
                record = run_task(task, job, lambda event: _emit(out, event))
            except Exception:  # noqa: BLE001 - a bug here must still reach the caller
                record = {"id": task.get("id"), "error": {"type": "internal", "class": "WorkerError",
                                                          "message": traceback.format_exc()[-2000:]}}
            _emit(out, record)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    code = main(sys.argv[1:])
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip MindSpore's noisy interpreter teardown
