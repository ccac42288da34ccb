"""The NetAdapt history: one row per proposal per iteration, saved as CSV and Parquet.

Row 0 is the seed network (``iteration`` 0, ``target`` ``seed``). Every later iteration has one
row per proposal: its target, widths, predicted and estimated latency, the constraint, the
held-out accuracy after the short-term fine-tune, and, on the chosen row, the measured latency
of the chosen network: ``measured_ms`` (raw), ``seed_measured_ms`` (the seed measured beside it)
and ``latency_ms`` (the loop's latency, ``L0 * measured / seed``; see :mod:`netadapt.run`). Both
files are rewritten whole (atomically) after every finished
iteration, so they always describe finished iterations only.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from latency.stamp import DeviceStamp

COLUMNS = ("iteration", "target", "kind", "width_before", "width", "widths", "arch_id", "constraint_ms",
           "predicted_ms", "estimated_ms", "relaxed", "top1", "top5", "loss", "train_loss", "finetune_s", "setup_s",
           "compile_s", "steps_s", "eval_s", "peak_rss_mb", "status",
           "error", "chosen", "measured_ms", "measured_p10_ms", "measured_p90_ms", "seed_measured_ms", "latency_ms",
           "latency_high_ms", "iteration_s")
SPLIT_COLUMNS = ("setup_s", "compile_s", "steps_s", "eval_s")  # where a proposal's finetune_s went
# Added after the first histories were written: an older history reads with NaN there.
LATER_COLUMNS = (*SPLIT_COLUMNS, "peak_rss_mb")
CSV_NAME = "history.csv"
STAMP_NAME = "stamp.json"
PARQUET_NAME = "history.parquet"


def empty_row() -> dict[str, Any]:
    row: dict[str, Any] = {name: math.nan for name in COLUMNS}
    row.update(target="", kind="", widths="", arch_id="", status="", error="", relaxed=False, chosen=False)
    return row


class History:
    """The rows of a run, kept in memory and written to ``<dir>/history.csv`` and ``.parquet``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.rows: list[dict[str, Any]] = []
        path = self.directory / CSV_NAME
        if path.exists():
            self.rows = read_history(path).to_dict("records")

    def truncate(self, last_iteration: int) -> None:
        """Forget rows of iterations after ``last_iteration`` (an iteration that did not finish)."""
        self.rows = [row for row in self.rows if int(row["iteration"]) <= last_iteration]

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            unknown = sorted(set(row) - set(COLUMNS))
            if unknown:
                raise KeyError(f"unknown history column {unknown[0]!r}; known: {list(COLUMNS)}")
            full = empty_row()
            full.update(row)
            self.rows.append(full)

    def frame(self) -> Any:
        frame = pd.DataFrame(self.rows, columns=list(COLUMNS))
        return _typed(frame)

    def save(self) -> None:
        """Write both files atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        frame = self.frame()
        csv_tmp = self.directory / (CSV_NAME + ".tmp")
        frame.to_csv(csv_tmp, index=False)
        parquet_tmp = self.directory / (PARQUET_NAME + ".tmp")
        frame.to_parquet(parquet_tmp, index=False)
        os.replace(csv_tmp, self.directory / CSV_NAME)
        os.replace(parquet_tmp, self.directory / PARQUET_NAME)


def _typed(frame: Any) -> Any:
    for name in ("iteration",):
        frame[name] = frame[name].astype("int64")
    for name in ("relaxed", "chosen"):
        frame[name] = frame[name].fillna(False).astype(bool)
    for name in ("target", "kind", "widths", "arch_id", "status", "error"):
        frame[name] = frame[name].fillna("").astype(str)
    for name in COLUMNS:
        if name not in ("iteration", "relaxed", "chosen", "target", "kind", "widths", "arch_id", "status", "error"):
            frame[name] = frame[name].astype("float64")
    return frame


def read_history(path: str | Path) -> Any:
    """A history as a pandas DataFrame, from ``history.csv``, ``history.parquet`` or a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / CSV_NAME if (path / CSV_NAME).exists() else path / PARQUET_NAME
    if not path.exists():
        raise FileNotFoundError(f"NetAdapt history {str(path)!r} not found")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, keep_default_na=True)
    for name in LATER_COLUMNS:
        if name not in frame.columns:
            frame[name] = math.nan
    missing = [name for name in COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a NetAdapt history (no column {missing[0]!r})")
    return _typed(frame[list(COLUMNS)].copy())


def trajectory(frame: Any) -> Any:
    """The chosen network of every iteration (the seed first): iteration, target, measured and
    predicted latency, held-out accuracy."""
    chosen = frame[frame["chosen"]].sort_values("iteration")
    return chosen[["iteration", "target", "width_before", "width", "latency_ms", "measured_ms", "predicted_ms",
                   "estimated_ms", "top1", "widths"]].reset_index(drop=True)


@dataclass(frozen=True)
class Trajectory:
    """A NetAdapt run as plain data, for plots: the chosen network of every iteration (the seed
    first) at its measured latency, every other proposal at its estimated latency, the final
    network after the long-term fine-tune, and the budget."""

    name: str
    source: str
    iterations: tuple[int, ...]
    latency_ms: tuple[float, ...]
    accuracy: tuple[float, ...]
    proposal_latency_ms: tuple[float, ...] = ()
    proposal_accuracy: tuple[float, ...] = ()
    final_latency_ms: float | None = None
    final_accuracy: float | None = None
    budget_ms: float | None = None
    final_epochs: int = 0  # epochs of the long-term fine-tune the final network had
    stamp: DeviceStamp | None = None  # what the latencies were measured under (None: a run from before it was kept)


def load_trajectory(run_dir: str | Path, name: str | None = None) -> Trajectory:
    """The :class:`Trajectory` of a NetAdapt run directory (its history and ``summary.json``)."""
    folder = Path(run_dir)
    frame = read_history(folder)
    chosen = frame[frame["chosen"]].sort_values("iteration")
    if chosen.empty:
        raise ValueError(f"the NetAdapt history in {str(folder)!r} has no chosen networks to draw")
    latency = chosen["latency_ms"].fillna(chosen["measured_ms"])
    others = frame[(~frame["chosen"]) & (frame["status"] == "ok")]
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if folder.is_dir() and summary_path.exists() else {}
    final = summary.get("final") or {}
    final_ms, final_top1 = final.get("latency_ms", math.nan), final.get("top1", math.nan)
    finished = math.isfinite(final_ms) and math.isfinite(final_top1)
    return Trajectory(name=name or f"NetAdapt {folder.name}", source=str(folder),
                      iterations=tuple(int(i) for i in chosen["iteration"]),
                      latency_ms=tuple(float(v) for v in latency), accuracy=tuple(float(v) for v in chosen["top1"]),
                      proposal_latency_ms=tuple(float(v) for v in others["estimated_ms"]),
                      proposal_accuracy=tuple(float(v) for v in others["top1"]),
                      final_latency_ms=float(final_ms) if finished else None,
                      final_accuracy=float(final_top1) if finished else None,
                      budget_ms=summary.get("budget_ms") or None,
                      final_epochs=int(final.get("long_term_epochs") or 0), stamp=read_stamp(folder))


def read_stamp(folder: str | Path) -> DeviceStamp | None:
    """The stamp a NetAdapt run measured under (``stamp.json``), or None where the run has none."""
    path = Path(folder) / STAMP_NAME
    if not path.is_file():
        return None
    try:
        return DeviceStamp.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a latency stamp ({error})") from None
