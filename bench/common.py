"""Helpers shared by the benchmarks: timing, summaries and the JSON report."""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("GLOG_v", "3")

RESULTS = Path(__file__).resolve().parent / "results"


def time_calls(function: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of ``function`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def summary(values: list[float]) -> dict[str, float]:
    """Median, p10, p90 and coefficient of variation of ``values``."""
    ordered = sorted(values)
    count = len(ordered)
    mean = statistics.fmean(ordered)
    return {"median": statistics.median(ordered), "p10": ordered[max(0, int(0.1 * (count - 1)))],
            "p90": ordered[min(count - 1, round(0.9 * (count - 1)))],
            "cv": statistics.pstdev(ordered) / mean if mean else 0.0, "n": count}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}


def write_report(name: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` (plus the machine) to ``bench/results/<name>.json`` and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **figures}, indent=2, default=float))
    print(f"\nwrote {path}")
    return path


class Ledger:
    """The finished jobs of a resumable benchmark: one JSON object per line of ``path``, keyed by the
    values of ``fields``. Rows that lack the items of ``stamp`` (an older protocol) are ignored, and
    so is a torn line (a run killed while writing it)."""

    def __init__(self, path: Path, fields: Sequence[str], stamp: dict[str, Any] | None = None) -> None:
        self.path = path
        self.fields = tuple(fields)
        self.stamp = dict(stamp or {})
        self.done: dict[tuple[Any, ...], dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and all(row.get(k) == v for k, v in self.stamp.items()):
                    self.done[self.key(row)] = row

    def key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[field] for field in self.fields)

    def add(self, row: dict[str, Any]) -> None:
        row = {**row, **self.stamp}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self.done[self.key(row)] = row


def run_pool(todo: Sequence[tuple[Any, ...]], work: Callable[..., Any], workers: int,
             finished: Callable[[tuple[Any, ...], Any], str],
             max_minutes: float | None = None) -> list[tuple[Any, ...]]:
    """``work(*job)`` for every job of ``todo``, in ``workers`` spawned processes (MindSpore is not
    fork-safe), each job submitted as a process frees up. ``finished(job, result)`` runs here as each
    one ends (keep it in a :class:`Ledger` there) and returns a line for the progress report, which
    goes to stderr with the elapsed time and an ETA. No job starts after ``max_minutes``: those running
    finish, and the jobs never started are returned (run again to go on)."""
    started = time.monotonic()
    queue = list(todo)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: dict[concurrent.futures.Future[Any], tuple[Any, ...]] = {}
        for index in range(1, len(todo) + 1):  # bounded: one job finishes per pass
            while queue and len(pending) < workers and (
                    max_minutes is None or time.monotonic() - started < 60 * max_minutes):
                job = queue.pop(0)
                pending[pool.submit(work, *job)] = job
            if not pending:
                break
            future = next(iter(concurrent.futures.wait(pending, return_when="FIRST_COMPLETED")[0]))
            job = pending.pop(future)
            line = finished(job, future.result())
            elapsed = time.monotonic() - started
            print(f"[{index}/{len(todo)}] {line}; elapsed {elapsed / 60:.1f} min, ETA "
                  f"{elapsed / index * (len(todo) - index) / 60:.1f} min", file=sys.stderr, flush=True)
    return queue
