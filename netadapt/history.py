"""The NetAdapt history: one row per proposal per iteration, saved as CSV and Parquet.

Row 0 is the seed network (``iteration`` 0, ``target`` ``seed``). Every later iteration has one
row per proposal: its target, widths, predicted and estimated latency, the constraint, the
held-out accuracy after the short-term fine-tune, and, on the chosen row, the measured latency
of the chosen network: ``measured_ms`` (raw), ``seed_measured_ms`` (the seed measured beside it)
and ``latency_ms`` (the loop's latency, ``L0 * measured / seed``; see :mod:`netadapt.run`). Both files are rewritten whole (atomically) after every finished
iteration, so they always describe finished iterations only.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

COLUMNS = ("iteration", "target", "kind", "width_before", "width", "widths", "arch_id", "constraint_ms",
           "predicted_ms", "estimated_ms", "relaxed", "top1", "top5", "loss", "train_loss", "finetune_s", "status",
           "error", "chosen", "measured_ms", "measured_p10_ms", "measured_p90_ms", "seed_measured_ms", "latency_ms",
           "iteration_s")
CSV_NAME = "history.csv"
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
        import pandas as pd

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
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / CSV_NAME if (path / CSV_NAME).exists() else path / PARQUET_NAME
    if not path.exists():
        raise FileNotFoundError(f"NetAdapt history {str(path)!r} not found")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, keep_default_na=True)
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
