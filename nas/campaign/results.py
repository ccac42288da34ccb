"""Campaign results: the trials table (pandas) and the Pareto front (accuracy up, latency down).

Every campaign is an Optuna study. Each trial carries user attributes written by
:mod:`nas.campaign.driver`: the decisions, the spec YAML, ``arch_id``, params, MAdds, the latency
(median, p10/p90, stamp, source), the proxy accuracy, the reward, durations and errors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

COLUMNS = ("trial", "state", "arch_id", "accuracy", "latency_ms", "latency_p10_ms", "latency_p90_ms", "reward",
           "params", "madds", "train_s", "measure_s", "total_s", "peak_rss_mb", "reused_from", "error",
           "latency_source", "lut_ms", "screen")


def pareto_mask(accuracy: Sequence[float], latency: Sequence[float]) -> np.ndarray:
    """True for points no other point beats: at least as accurate and as fast, strictly better in one."""
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency, dtype=float)
    mask = np.ones(len(acc), dtype=bool)
    for index in range(len(acc)):
        better_or_equal = (acc >= acc[index]) & (lat <= lat[index])
        strictly = (acc > acc[index]) | (lat < lat[index])
        if np.any(better_or_equal & strictly):
            mask[index] = False
    return mask


def trials_frame(trials: Iterable[Any]) -> Any:
    """A pandas DataFrame with one row per Optuna trial (see ``COLUMNS``), plus ``pareto``."""
    rows = []
    for trial in trials:
        attrs = trial.user_attrs
        rows.append({
            "trial": trial.number, "state": trial.state.name, "arch_id": attrs.get("arch_id"),
            "accuracy": attrs.get("accuracy"), "latency_ms": attrs.get("latency_ms"),
            "latency_p10_ms": attrs.get("latency_p10_ms"), "latency_p90_ms": attrs.get("latency_p90_ms"),
            "reward": attrs.get("reward"), "params": attrs.get("params"), "madds": attrs.get("madds"),
            "train_s": attrs.get("train_seconds"), "measure_s": attrs.get("measure_seconds"),
            "total_s": attrs.get("total_seconds"), "peak_rss_mb": attrs.get("peak_rss_mb"),
            "reused_from": attrs.get("reused_from"),
            "error": attrs.get("error"), "latency_source": attrs.get("latency_source"), "lut_ms": attrs.get("lut_ms"),
            "screen": attrs.get("screen"),
        })
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    done = (frame["state"] == "COMPLETE") & frame["accuracy"].notna() & frame["latency_ms"].notna()
    frame["pareto"] = False
    if done.any():
        subset = frame[done]
        frame.loc[done, "pareto"] = pareto_mask(subset["accuracy"], subset["latency_ms"])
    return frame


def write_tables(frame: Any, run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``trials.csv`` and ``trials.parquet`` into the run directory."""
    run_dir = Path(run_dir)
    csv_path, parquet_path = run_dir / "trials.csv", run_dir / "trials.parquet"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path, index=False)
    return csv_path, parquet_path


def format_frame(frame: Any) -> str:
    """The table as text, with the front marked."""
    if frame.empty:
        return "(no trials yet)"
    shown = frame[["trial", "state", "arch_id", "accuracy", "latency_ms", "reward", "params", "madds", "total_s",
                   "pareto"]].copy()
    shown["params"] = shown["params"].map(lambda v: f"{v / 1e6:.2f}M" if v == v and v is not None else "")
    shown["madds"] = shown["madds"].map(lambda v: f"{v / 1e6:.1f}M" if v == v and v is not None else "")
    shown["pareto"] = shown["pareto"].map(lambda v: "*" if v else "")
    with pd.option_context("display.max_rows", 500, "display.width", 160, "display.float_format", "{:.4f}".format):
        return shown.to_string(index=False)
