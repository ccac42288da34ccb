"""Helpers shared by the benchmarks: timing, summaries and the JSON report."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

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
