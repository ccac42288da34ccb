"""Pareto plots of accuracy against latency: a static PNG (matplotlib) and an interactive HTML
page (plotly), with every trial, the searched front, the baseline curve (the space's reference by
width, labelled, with the front's gain against it), the target, reward iso-lines, reference models
placed by their proxy accuracy, and NetAdapt trajectories on the same axes; and a
reward-over-trials plot. A reference without a proxy accuracy is not drawn: a latency alone
cannot say whether the search beats it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from nas.campaign.baselines import BaselinePoint, Comparison
from nas.campaign.reward import RewardConfig


@dataclass(frozen=True)
class ReferencePoint:
    """A reference model at its measured latency, with its proxy accuracy if it was evaluated."""

    name: str
    latency_ms: float
    accuracy: float | None = None


class Trajectory(Protocol):
    """What the plots need of a pruning run such as NetAdapt's (``netadapt.history.Trajectory``
    is one): the chosen network of every iteration at its measured latency, the other
    proposals at their estimated latency, the final network and the budget. Plain data."""

    name: str
    iterations: Sequence[int]
    latency_ms: Sequence[float]
    accuracy: Sequence[float]
    proposal_latency_ms: Sequence[float]
    proposal_accuracy: Sequence[float]
    final_latency_ms: float | None
    final_accuracy: float | None
    budget_ms: float | None
    final_epochs: int


@dataclass
class PlotData:
    frame: Any
    reward: RewardConfig | None = None
    references: list[ReferencePoint] = field(default_factory=list)
    trajectories: list[Trajectory] = field(default_factory=list)
    title: str = "accuracy vs latency"
    baselines: list[BaselinePoint] = field(default_factory=list)
    comparison: Comparison | None = None
    stamp: str = ""  # what every latency on the axes was measured under (DeviceStamp.brief), if known

    @property
    def latency_label(self) -> str:
        return f"latency (ms, measured: {self.stamp})" if self.stamp else "latency (ms, measured)"


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no screen needed)."""
    import matplotlib  # heavy (about a second to import): loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: see above

    return plt


def draw_trajectory(axes: Any, trajectory: Trajectory, color: str | None = None) -> Any:
    """Draw a pruning run on matplotlib ``axes``: the chosen networks joined in order and
    numbered by iteration, the other proposals faint, the final network as a star, the budget as
    a dotted line. Returns the line of the chosen networks."""
    (line,) = axes.plot(trajectory.latency_ms, trajectory.accuracy, marker="o", markersize=4, linewidth=1.5,
                        color=color, label=f"{trajectory.name} (chosen, measured)")
    tint = line.get_color()
    if len(trajectory.proposal_latency_ms):
        axes.scatter(trajectory.proposal_latency_ms, trajectory.proposal_accuracy, s=10, alpha=0.25, color=tint,
                     label=f"{trajectory.name} proposals (estimated)")
    for iteration, latency, accuracy in zip(trajectory.iterations, trajectory.latency_ms, trajectory.accuracy):
        if math.isfinite(latency) and math.isfinite(accuracy):
            axes.annotate(str(iteration), (latency, accuracy), textcoords="offset points", xytext=(3, 3), fontsize=7,
                          color=tint)
    if trajectory.final_latency_ms is not None and trajectory.final_accuracy is not None:
        axes.scatter([trajectory.final_latency_ms], [trajectory.final_accuracy], marker="*", s=120, color=tint,
                     zorder=5, label=f"{trajectory.name} final, " + (
                         f"after a {trajectory.final_epochs}-epoch long-term fine-tune" if trajectory.final_epochs
                         else "no long-term fine-tune"))
    if trajectory.budget_ms:
        axes.axvline(trajectory.budget_ms, color=tint, linestyle=":", linewidth=1)
    if not axes.get_xlabel():  # on a campaign's axes, keep its labels
        axes.set_xlabel("latency (ms, measured)")
    if not axes.get_ylabel():
        axes.set_ylabel("accuracy (held out)")
    return line


def _latency_range(data: PlotData) -> tuple[float, float]:
    values = [v for v in data.frame.get("latency_ms", []) if v == v and v is not None]
    values += [r.latency_ms for r in data.references if r.accuracy is not None]
    values += [b.latency_ms for b in data.baselines]
    for trajectory in data.trajectories:
        values += list(trajectory.latency_ms)
    if data.reward is not None:
        values.append(data.reward.target_ms)
    if not values:
        return 0.1, 10.0
    low, high = min(values), max(values)
    return max(1e-3, low * 0.8), high * 1.2


def iso_lines(data: PlotData, count: int = 4) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(reward level, latencies, accuracies) curves of equal reward through the observed range."""
    if data.reward is None:
        return []
    done = data.frame[(data.frame["state"] == "COMPLETE") & data.frame["reward"].notna()]
    if done.empty:
        return []
    levels = np.quantile(done["reward"].astype(float), np.linspace(0.25, 1.0, count))
    low, high = _latency_range(data)
    latencies = np.geomspace(low, high, 80)
    curves = []
    for level in levels:
        # Every reward kind is affine in accuracy at a fixed latency: R = slope * acc + offset.
        accuracies = []
        for latency in latencies:
            offset = data.reward.score(0.0, latency)
            slope = data.reward.score(1.0, latency) - offset
            accuracies.append((level - offset) / slope if slope > 0 else np.nan)
        curves.append((float(level), latencies, np.asarray(accuracies)))
    return curves


def _title(data: PlotData) -> str:
    """The title, with the front's comparison against the baselines on a second line."""
    if data.comparison is None or data.comparison.baselines < 2:
        return data.title
    parts = []
    if data.comparison.gain_points is not None:
        parts.append(f"{data.comparison.gain_points:+.2f} points at equal latency")
    if data.comparison.speedup is not None:
        parts.append(f"{data.comparison.speedup:.2f}x faster at equal accuracy")
    return f"{data.title}\nfront vs baselines: {', '.join(parts) or 'outside the baselines range'}"


def write_png(data: PlotData, path: str | Path) -> Path:
    """The static Pareto plot."""
    plt = pyplot()
    from matplotlib.ticker import FormatStrFormatter  # heavy: matplotlib, loaded only to draw

    frame = data.frame
    done = frame[(frame["state"] == "COMPLETE") & frame["accuracy"].notna() & frame["latency_ms"].notna()]
    figure, axes = plt.subplots(figsize=(10.5, 5.5))
    if not done.empty:
        axes.scatter(done["latency_ms"], done["accuracy"], s=22, color="#9aa7b8", label="trials", zorder=2)
    front = done[done["pareto"].astype(bool)].sort_values("latency_ms")
    if not front.empty:
        axes.plot(front["latency_ms"], front["accuracy"], "-o", color="#d1495b", ms=6, label="Pareto front", zorder=3)
    for level, latencies, accuracies in iso_lines(data):
        axes.plot(latencies, accuracies, ":", color="#6c757d", lw=0.9, zorder=1)
        finite = np.where(np.isfinite(accuracies) & (accuracies <= 1.0))[0]
        if finite.size:
            axes.annotate(f"R={level:.3f}", (latencies[finite[-1]], accuracies[finite[-1]]), fontsize=7,
                          color="#6c757d")
    if data.reward is not None:
        axes.axvline(data.reward.target_ms, color="#2e86ab", ls="--", lw=1.2,
                     label=f"target {data.reward.target_ms:g} ms")
    if data.baselines:
        points = sorted(data.baselines, key=lambda point: point.latency_ms)
        axes.plot([p.latency_ms for p in points], [p.accuracy for p in points], "-s", color="#3d405b", ms=6,
                  label="baselines (reference by width)", zorder=3)
        for point in points:
            axes.annotate(point.label, (point.latency_ms, point.accuracy), textcoords="offset points",
                          xytext=(5, -11), fontsize=8, color="#3d405b")
    colours = ["#00798c", "#edae49", "#8d6a9f", "#81b29a", "#e07a5f"]
    for index, reference in enumerate(r for r in data.references if r.accuracy is not None):
        axes.scatter([reference.latency_ms], [reference.accuracy], marker="*", s=160,
                     color=colours[index % len(colours)], label=reference.name, zorder=4)
    axes.set_xlabel(data.latency_label)
    axes.set_ylabel("accuracy (proxy, held out)")
    for trajectory in data.trajectories:
        draw_trajectory(axes, trajectory)
    axes.set_xscale("log")

    axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes.tick_params(axis="x", which="minor", labelsize=7)
    axes.set_title(_title(data), fontsize=10)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside, never on points
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def write_html(data: PlotData, path: str | Path) -> Path:
    """The interactive Pareto plot (plotly, self-contained HTML)."""
    import plotly.graph_objects as go  # heavy: plotly, loaded only to draw

    frame = data.frame
    done = frame[(frame["state"] == "COMPLETE") & frame["accuracy"].notna() & frame["latency_ms"].notna()]
    hover = [f"trial {t}<br>arch {a}<br>reward {r:.4f}<br>params {p / 1e6:.2f}M" for t, a, r, p in
             zip(done["trial"], done["arch_id"], done["reward"].fillna(float("nan")), done["params"].fillna(0))]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=done["latency_ms"], y=done["accuracy"], mode="markers", name="trials",
                                text=hover, hoverinfo="text+x+y", marker={"color": "#9aa7b8"}))
    front = done[done["pareto"].astype(bool)].sort_values("latency_ms")
    if not front.empty:
        figure.add_trace(go.Scatter(x=front["latency_ms"], y=front["accuracy"], mode="lines+markers",
                                    name="Pareto front", marker={"color": "#d1495b"}))
    for level, latencies, accuracies in iso_lines(data):
        figure.add_trace(go.Scatter(x=latencies, y=accuracies, mode="lines", name=f"reward {level:.3f}",
                                    line={"dash": "dot", "color": "#6c757d", "width": 1}))
    if data.reward is not None:
        figure.add_vline(x=data.reward.target_ms, line_dash="dash", line_color="#2e86ab",
                         annotation_text=f"target {data.reward.target_ms:g} ms")
    if data.baselines:
        points = sorted(data.baselines, key=lambda point: point.latency_ms)
        figure.add_trace(go.Scatter(x=[p.latency_ms for p in points], y=[p.accuracy for p in points],
                                    mode="lines+markers+text", text=[p.label for p in points],
                                    textposition="bottom right", name="baselines (reference by width)",
                                    marker={"symbol": "square", "color": "#3d405b"}))
    for reference in data.references:
        if reference.accuracy is not None:
            figure.add_trace(go.Scatter(x=[reference.latency_ms], y=[reference.accuracy], mode="markers",
                                        name=reference.name, marker={"symbol": "star", "size": 14}))
    for trajectory in data.trajectories:
        figure.add_trace(go.Scatter(x=list(trajectory.latency_ms), y=list(trajectory.accuracy),
                                    mode="lines+markers", name=trajectory.name))
    figure.update_layout(title=_title(data).replace("\n", "<br>"), xaxis_title=data.latency_label,
                         yaxis_title="accuracy (proxy)",
                         xaxis_type="log", template="plotly_white")
    path = Path(path)
    figure.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def write_reward_plot(frame: Any, path: str | Path, title: str = "reward over trials") -> Path:
    """Reward per trial in the order asked, with the running best."""
    plt = pyplot()
    done = frame[(frame["state"] == "COMPLETE") & frame["reward"].notna()].sort_values("trial")
    figure, axes = plt.subplots(figsize=(8, 4))
    if not done.empty:
        axes.plot(done["trial"], done["reward"], "o", ms=4, color="#9aa7b8", label="reward")
        axes.plot(done["trial"], np.maximum.accumulate(done["reward"].astype(float)), "-", color="#d1495b",
                  label="best so far")
    failed = frame[frame["state"] == "FAIL"]
    if not failed.empty:
        axes.plot(failed["trial"], [axes.get_ylim()[0]] * len(failed), "x", color="black", label="failed")
    axes.set_xlabel("trial")
    axes.set_ylabel("reward")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
