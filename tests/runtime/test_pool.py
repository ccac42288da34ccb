"""The bounded Ray job pool, on a real local Ray: values, failures, time limits, cancel, shutdown."""
from __future__ import annotations

import math
import os
import time

import pytest

from nas.runtime.pool import JobPool, JobTimeoutError

pytestmark = pytest.mark.slow  # starts a local Ray


def square_root(value: float) -> float:  # module level: Ray workers import it (the project is on their path)
    return math.sqrt(value)


def nap(seconds: float) -> None:
    time.sleep(seconds)


def test_values_failures_and_time_limits_come_back_as_outcomes() -> None:
    pool: JobPool[str] = JobPool(square_root, workers=2, timeout_s=60.0, what="square root", timeout_hint="t")
    try:
        outcomes = {outcome.key: outcome for outcome in pool.map_unordered([("four", (4.0,)), ("minus", (-1.0,)),
                                                                            ("nine", (9.0,))])}
        assert sorted(outcomes) == ["four", "minus", "nine"]
        assert outcomes["four"].ok and outcomes["four"].value == 2.0 and outcomes["nine"].value == 3.0
        assert not outcomes["minus"].ok and "math domain error" in str(outcomes["minus"].error)
        assert pool.in_flight == 0 and pool.has_room
    finally:
        pool.close()

    slow: JobPool[int] = JobPool(nap, workers=1, timeout_s=1.0, what="the nap", timeout_hint="raise nap_s")
    try:
        slow.submit(7, 60.0)
        assert slow.keys() == [7] and not slow.has_room
        outcomes = []
        for _ in range(60):  # bounded: the limit is 1 s
            outcomes += slow.wait(timeout=0.5)
            if outcomes:
                break
        assert [outcome.key for outcome in outcomes] == [7]
        error = outcomes[0].error
        assert isinstance(error, JobTimeoutError) and str(error) == "the nap timed out after 1 s (raise nap_s)"
        assert slow.in_flight == 0

        slow.submit(8, 60.0)
        assert slow.cancel_all() == [8] and slow.in_flight == 0 and slow.wait(timeout=0.1) == []
    finally:
        slow.close()
    assert not slow.started_ray


def hold_memory(megabytes: int) -> int:
    """Touch ``megabytes`` MiB, release them, and return this worker's process id."""
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])
    del block
    return os.getpid()


def test_each_outcome_carries_its_jobs_peak_memory_and_workers_are_recycled() -> None:
    pool: JobPool[int] = JobPool(hold_memory, workers=1, timeout_s=120.0, recycle_after=2)
    try:
        sizes = [300, 10, 10, 10, 300, 10]
        outcomes = [next(iter(pool.map_unordered([(index, (size,))]))) for index, size in enumerate(sizes)]
    finally:
        pool.close()
    assert all(outcome.ok for outcome in outcomes)
    peaks = [outcome.peak_rss_mb for outcome in outcomes]
    assert all(peak is not None for peak in peaks)
    # The peak is the job's own (reset before each job): 300 MiB jobs stand out, the next one does not.
    assert peaks[0] - peaks[1] > 250 and peaks[4] - peaks[5] > 250 and abs(peaks[2] - peaks[3]) < 100
    pids = [outcome.value for outcome in outcomes]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]  # two jobs per worker
    assert len(set(pids)) == 3
