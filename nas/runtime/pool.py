"""The one bounded job pool: a function run as Ray tasks, a bounded number at a time, each with a
time limit after which it is cancelled. Campaigns evaluate candidates with it and NetAdapt
fine-tunes proposals with it.

A job that raises, whose worker dies (past ``max_retries``), or that runs past ``timeout_s``
comes back as an exception in its outcome, never as a crash of the caller. The pool starts a
local Ray (or joins ``address``) on first use and shuts down only what it started.

**Memory.** MindSpore keeps every compiled graph of a process alive, so a long-lived worker that
trains one new network per job grows without bound. A worker is therefore replaced after
``recycle_after`` jobs (Ray's ``max_calls``): its memory returns to the system, at the cost of one
process start and MindSpore import per ``recycle_after`` jobs. Every outcome carries the job's
peak resident memory (``peak_rss_mb``: Linux's ``VmHWM``, reset before the job through
``/proc/self/clear_refs``; where that cannot be reset, the worker's peak so far).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from nas.runtime.cluster import connect_ray, import_ray
from nas.spec.errors import NasError

K = TypeVar("K")


class JobTimeoutError(NasError):
    """A job ran past the pool's time limit and was cancelled."""


@dataclass(frozen=True)
class Outcome(Generic[K]):
    """What came back for the job ``key``: its ``value``, or the ``error`` that stopped it."""

    key: K
    value: Any = None
    error: BaseException | None = None
    peak_rss_mb: float | None = None  # the job's peak resident memory in its worker

    @property
    def ok(self) -> bool:
        return self.error is None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux ``VmHWM``); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's peak resident memory since the last reset (or its start), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def measured_call(function: Callable[..., Any], *args: Any) -> tuple[Any, float | None]:
    """``function(*args)`` and its peak resident memory in MiB (what a pool's worker runs)."""
    reset_peak_rss()
    value = function(*args)
    return value, peak_rss_mb()


class JobPool(Generic[K]):
    """Run ``function`` on Ray, at most ``workers`` jobs at a time, ``num_cpus`` CPUs each.

    ``timeout_s`` bounds every job's wall time; the error says "<what> timed out after ... s
    (<timeout_hint>)", ``timeout_hint`` naming the setting that sets the limit. ``cluster_cpus`` is
    the size of a local cluster (default
    ``workers * num_cpus``); ``address`` joins an existing one instead. A worker process is replaced
    after ``recycle_after`` jobs (None: never).
    """

    def __init__(self, function: Callable[..., Any], *, workers: int, num_cpus: int = 1, address: str | None = None,
                 max_retries: int = 0, timeout_s: float | None = None, what: str = "job", timeout_hint: str = "",
                 cluster_cpus: int | None = None, recycle_after: int | None = None) -> None:
        self.ray = import_ray()
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.what = what
        self.timeout_hint = timeout_hint
        self.started_ray = connect_ray(address, cluster_cpus or self.workers * num_cpus)
        if recycle_after is not None and recycle_after < 1:
            raise ValueError(f"recycle_after: must be at least 1 job (got {recycle_after!r})")
        self.function = function
        # Named after ``function``: a worker's process title reads ``ray::<function>`` (e.g. ps shows
        # ray::evaluate_candidate), not the wrapper's name.
        self._task = self.ray.remote(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False,
                                     max_calls=recycle_after or 0)(measured_call).options(
                                         name=getattr(function, "__name__", "job"))
        self._running: dict[Any, tuple[K, float]] = {}  # Ray future -> (key, submitted at)

    # ----- submit and collect -----------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def has_room(self) -> bool:
        return len(self._running) < self.workers

    def submit(self, key: K, *args: Any) -> None:
        """Start ``function(*args)`` as the job ``key``."""
        self._running[self._task.remote(self.function, *args)] = (key, time.monotonic())

    def keys(self) -> list[K]:
        """The keys of the jobs in flight."""
        return [key for key, _ in self._running.values()]

    def wait(self, timeout: float = 1.0) -> list[Outcome[K]]:
        """The jobs that finished within ``timeout`` seconds (at least one if any finishes), and
        the jobs that ran past the time limit (cancelled now)."""
        if not self._running:
            return []
        ready, _ = self.ray.wait(list(self._running), num_returns=1, timeout=timeout)
        outcomes = []
        for future in ready:
            key, _ = self._running.pop(future)
            try:
                value, peak = self.ray.get(future)
                outcomes.append(Outcome(key, value=value, peak_rss_mb=peak))
            except Exception as error:  # the job raised, or its worker died past the retries
                outcomes.append(Outcome(key, error=error))
        if self.timeout_s is not None:
            now = time.monotonic()
            for future, (key, submitted) in list(self._running.items()):
                if now - submitted > self.timeout_s:
                    self._cancel(future)
                    hint = f" ({self.timeout_hint})" if self.timeout_hint else ""
                    outcomes.append(Outcome(key, error=JobTimeoutError(
                        f"{self.what} timed out after {self.timeout_s:g} s{hint}")))
        return outcomes

    def map_unordered(self, jobs: Iterable[tuple[K, tuple[Any, ...]]]) -> Iterator[Outcome[K]]:
        """Run every ``(key, args)`` job, ``workers`` at a time; yield outcomes as they finish."""
        pending = list(jobs)
        # Bounded: every job is submitted once, then finishes, fails or times out; a wait lasts <= 5 s.
        limit = self.timeout_s if self.timeout_s is not None else 7 * 24 * 3600.0
        for _ in range((len(pending) + 1) * (int(limit / 5.0) + 2)):
            if not pending and not self._running:
                return
            while pending and self.has_room:
                key, args = pending.pop(0)
                self.submit(key, *args)
            yield from self.wait(timeout=5.0)
        raise NasError("the job pool reached its loop bound")

    # ----- stop ---------------------------------------------------------------------------------

    def _cancel(self, future: Any) -> None:
        self._running.pop(future, None)
        try:
            self.ray.cancel(future, force=True)
        except Exception:  # already finished or gone
            pass

    def cancel_all(self) -> list[K]:
        """Cancel every job in flight; returns their keys."""
        keys = self.keys()
        for future in list(self._running):
            self._cancel(future)
        return keys

    def close(self) -> None:
        """Cancel what is running, and shut Ray down if this pool started it."""
        self.cancel_all()
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False
