"""The MindSpore backend: isolation, exclusive device access, the cache in front of it, and
per-piece measurement. Every test runs real workers."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from latency import MeasurementCrash, UnbuildableSpecError, UnknownDeviceError
from latency.cache import CachedBackend, LatencyCache
from latency.mindspore_backend import MindSporeBackend
from latency.pieces import Piece, spec_pieces
from nas.runtime.devicelock import DeviceBusyError, device_lock
from tests.support.latency import FAST, tiny_spec


@pytest.fixture(autouse=True)
def private_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    return str(tmp_path / "locks")


def _workers(name: str) -> list[int]:
    """The device servers of the server ``name`` (the server process itself, not the shell that
    launched it and waits for it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:5] == [b"-m", b"latency.worker", b"--serve", name.encode()]:
            found.append(int(entry.name))
    return found


def _wait_for_worker(name: str, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _workers(name)
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError("no latency worker appeared")


def _train(lock_dir: str, seconds: float, started) -> None:
    os.environ["NAS_LOCK_DIR"] = lock_dir
    with device_lock("CPU", exclusive=False):
        started.set()
        time.sleep(seconds)


def test_unknown_devices_and_bad_settings_fail_before_any_work() -> None:
    with pytest.raises(UnknownDeviceError, match="'TPU'"):
        MindSporeBackend("TPU")
    with pytest.raises(ValueError, match="max_repeats"):
        MindSporeBackend(min_repeats=10, max_repeats=5)
    with pytest.raises(ValueError, match="timeout_s"):
        MindSporeBackend(timeout_s=0)


def test_the_thread_count_is_part_of_the_stamp() -> None:
    one, two = MindSporeBackend(threads=1, resolution=32), MindSporeBackend(threads=2, resolution=32)
    assert one.stamp().threads == 1 and two.stamp().threads == 2
    assert one.stamp().key != two.stamp().key
    assert MindSporeBackend(resolution=32).stamp().threads == len(os.sched_getaffinity(0))


@pytest.mark.slow  # measures
def test_a_measurement_waits_for_training_and_excludes_it(private_locks) -> None:
    context = mp.get_context("spawn")
    started = context.Event()
    training = context.Process(target=_train, args=(private_locks, 300.0, started))
    training.start()
    try:
        assert started.wait(30)
        with pytest.raises(DeviceBusyError):  # training holds the device: no measurement alongside it
            MindSporeBackend(resolution=16, lock_timeout_s=0.5, **FAST).measure(tiny_spec())
    finally:
        training.kill()  # ends the "training" (and releases its lock) once the point is made
        training.join()

    slow = dict(FAST, min_repeats=3000, max_repeats=3000)  # a few seconds of timing
    backend = MindSporeBackend(resolution=16, **slow)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", backend.measure(tiny_spec())))
    thread.start()
    _wait_for_worker(backend.server.name)
    refused = False  # no training step may start while it times (it locks after compiling)
    deadline = time.monotonic() + 120
    while thread.is_alive() and not refused and time.monotonic() < deadline:
        try:
            with device_lock("CPU", exclusive=False, timeout=0.05):
                pass
            time.sleep(0.05)
        except DeviceBusyError:
            refused = True
    assert refused
    thread.join(120)
    assert outcome["result"].median_ms > 0
    with device_lock("CPU", exclusive=False, timeout=5):  # released afterwards
        pass


def test_a_crashing_worker_raises_a_named_error_and_the_caller_goes_on() -> None:
    backend = MindSporeBackend(resolution=16, **FAST)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            backend.measure(tiny_spec())
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    os.kill(_wait_for_worker(backend.server.name), signal.SIGKILL)
    thread.join(60)
    assert len(errors) == 1 and isinstance(errors[0], MeasurementCrash)
    assert "died mid-request" in str(errors[0]) or "was killed by signal 9" in str(errors[0])
    assert backend.measure(tiny_spec()).median_ms > 0  # the caller is unharmed: a fresh server measures
    assert backend.launches == 2


def test_cache_hits_do_not_start_a_worker(tmp_path) -> None:
    backend = MindSporeBackend(resolution=16, **{**FAST, "tolerance": 10.0})  # any interval is precise enough
    cached = CachedBackend(backend, LatencyCache(tmp_path / "latency.db"))
    first = cached.measure(tiny_spec())
    assert backend.launches == 1
    assert cached.measure(tiny_spec()) == first
    assert CachedBackend(backend, LatencyCache(tmp_path / "latency.db")).measure(tiny_spec()) == first
    assert backend.launches == 1
    assert first.precise  # a precise figure is trusted; an imprecise one would be measured again
    again = CachedBackend(backend, cached.cache, remeasure=True).measure(tiny_spec())
    assert backend.launches == 1 and again.stamp == first.stamp  # the running server measured it again
    assert len(again.samples) > len(first.samples) and cached.cache.count(tiny_spec().arch_id, first.stamp) == 2


@pytest.mark.slow  # measures
def test_pieces_are_measured_in_one_worker_and_a_bad_one_keeps_the_ones_before() -> None:
    backend = MindSporeBackend(**FAST)
    pieces = spec_pieces(tiny_spec(), 16)
    layer = pieces[1]
    config = json.loads(layer.config)
    config["plan"]["out_channels"] = 0  # no MindSpore conv can be built with zero outputs
    broken = Piece(kind="layer", key="broken", base="broken", coords=layer.coords, se=0,
                   input_shape=layer.input_shape, config=json.dumps(config), name="broken-layer")
    finished = []
    with pytest.raises(UnbuildableSpecError, match="broken-layer"):
        for piece, result in backend.measure_pieces([pieces[0], layer, broken, pieces[2]], 16):
            finished.append(piece.key)
            assert result.stamp.resolution == 16 and result.median_ms > 0
    assert finished == [pieces[0].key, layer.key]
    assert backend.launches == 1
