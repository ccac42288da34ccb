"""Draw a NetAdapt trajectory (latency against held-out accuracy, per iteration) on matplotlib axes.

``plot_trajectory(ax, run_dir_or_history)`` draws onto an existing ``Axes`` so that ``nas plot``
can put a NetAdapt run on the same axes as a search campaign. Works with the Agg backend.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _frame(history: Any) -> tuple[Any, dict[str, Any] | None]:
    from netadapt.history import read_history

    if hasattr(history, "columns"):
        return history, None
    path = Path(history)
    summary = None
    folder = path if path.is_dir() else path.parent
    if (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text())
    return read_history(path), summary


def plot_trajectory(ax: Any, history: Any, *, label: str | None = None, color: str | None = None,
                    proposals: bool = True, annotate: bool = True) -> Any:
    """Draw the run on ``ax``: the chosen network of every iteration (measured latency, the
    history's ``latency_ms``, against held-out top-1, joined in order, numbered), optionally every proposal (estimated latency,
    faint), and the final network after the long-term fine-tune (a star) when the run directory
    has a ``summary.json``. ``history`` is a run directory, a history file or a DataFrame.
    Returns the line of the trajectory."""
    frame, summary = _frame(history)
    chosen = frame[frame["chosen"]].sort_values("iteration").copy()
    chosen["latency"] = chosen["latency_ms"].fillna(chosen["measured_ms"])
    if chosen.empty:
        raise ValueError("the NetAdapt history has no chosen networks to draw")
    name = label or "NetAdapt"
    (line,) = ax.plot(chosen["latency"], chosen["top1"], marker="o", markersize=4, linewidth=1.5,
                      color=color, label=f"{name} (chosen, measured)")
    tint = line.get_color()
    if proposals:
        others = frame[(~frame["chosen"]) & (frame["status"] == "ok")]
        if not others.empty:
            ax.scatter(others["estimated_ms"], others["top1"], s=10, alpha=0.25, color=tint,
                       label=f"{name} proposals (estimated)")
    if annotate:
        for _, row in chosen.iterrows():
            if math.isfinite(row["latency"]) and math.isfinite(row["top1"]):
                ax.annotate(str(int(row["iteration"])), (row["latency"], row["top1"]), textcoords="offset points",
                            xytext=(3, 3), fontsize=7, color=tint)
    final = (summary or {}).get("final")
    if final and math.isfinite(final.get("latency_ms", math.nan)) and math.isfinite(final.get("top1", math.nan)):
        ax.scatter([final["latency_ms"]], [final["top1"]], marker="*", s=120, color=tint, zorder=5,
                   label=f"{name} after long-term fine-tune")
    budget = (summary or {}).get("budget_ms")
    if budget:
        ax.axvline(budget, color=tint, linestyle=":", linewidth=1)
    if not ax.get_xlabel():  # on a campaign's axes, keep its labels
        ax.set_xlabel("latency (ms, measured)")
    if not ax.get_ylabel():
        ax.set_ylabel("accuracy (held out)")
    return line


def save_trajectory(history: Any, path: str | Path, *, title: str | None = None) -> Path:
    """A stand-alone PNG of one run (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4.5))
    plot_trajectory(ax, history)
    ax.set_title(title or "NetAdapt trajectory")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
