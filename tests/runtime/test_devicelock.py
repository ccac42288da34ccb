"""The cross-process device lock: shared for training, exclusive for measurement."""
from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from nas.runtime.devicelock import DeviceBusyError, device_lock


def _hold(lock_dir: str, exclusive: bool, seconds: float, started) -> None:
    import os

    os.environ["NAS_LOCK_DIR"] = lock_dir
    with device_lock("CPU", exclusive=exclusive):
        started.set()
        time.sleep(seconds)


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path))
    return str(tmp_path)


def _start(lock_dir: str, exclusive: bool, seconds: float):
    context = mp.get_context("spawn")
    started = context.Event()
    process = context.Process(target=_hold, args=(lock_dir, exclusive, seconds, started))
    process.start()
    assert started.wait(30)
    return process


def test_readers_share_and_writers_exclude(lock_dir) -> None:
    reader = _start(lock_dir, False, 1.5)
    with device_lock("CPU", exclusive=False, timeout=0.5):  # a second training may run alongside
        pass
    with pytest.raises(DeviceBusyError, match="CPU"):
        with device_lock("CPU", exclusive=True, timeout=0.3):
            pass
    start = time.monotonic()
    with device_lock("CPU", exclusive=True, timeout=30):
        assert time.monotonic() - start > 0.5  # waited for the training to finish
    reader.join()


def test_a_dead_holder_releases_the_lock(lock_dir) -> None:
    holder = _start(lock_dir, True, 60)
    holder.kill()
    holder.join()
    with device_lock("CPU", exclusive=True, timeout=5):
        pass


def test_devices_are_independent(lock_dir) -> None:
    holder = _start(lock_dir, True, 2)
    with device_lock("GPU:0", exclusive=True, timeout=0.5):
        pass
    holder.join()
