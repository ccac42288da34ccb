"""Exclusive device access across processes on one host (Ray workers included).

Latency measured while other work runs on the same cores is worthless. Every job that uses a
device holds this lock: training takes it *shared* (several trainings may overlap), a latency
measurement takes it *exclusive* (nothing else runs). The lock is a pair of ``flock`` files in
``$NAS_LOCK_DIR`` (default ``~/.cache/nas/locks``): a turnstile that a waiting measurement holds
so that a stream of trainings cannot starve it, and the device lock itself. Locks are released
by the kernel when a process dies, so a crashed worker never leaves a device locked.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path
from typing import Iterator

from nas.spec.errors import NasError


class DeviceBusyError(NasError):
    """The device lock was not acquired within the timeout."""


def lock_dir() -> Path:
    path = Path(os.environ.get("NAS_LOCK_DIR", Path.home() / ".cache" / "nas" / "locks"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _flock(handle, mode: int, deadline: float | None, what: str) -> None:
    delay = 0.005
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeviceBusyError(f"device {what!r} stayed busy; lock not acquired within the timeout") from None
            time.sleep(delay)
            delay = min(0.1, delay * 2)


@contextlib.contextmanager
def device_lock(device: str = "CPU", *, exclusive: bool = True, timeout: float | None = None) -> Iterator[None]:
    """Hold ``device`` shared (training) or exclusive (measurement) for the ``with`` body."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device) or "device"
    folder = lock_dir()
    deadline = None if timeout is None else time.monotonic() + timeout
    with open(folder / f"{safe}.turnstile", "a+") as turnstile, open(folder / f"{safe}.lock", "a+") as main:
        _flock(turnstile, fcntl.LOCK_EX, deadline, device)
        try:
            _flock(main, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, deadline, device)
        finally:
            if not exclusive:  # a reader passes the turnstile straight through
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(main, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
