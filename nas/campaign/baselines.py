"""Baselines: the search space's own reference network at a few widths, evaluated at the start of
every campaign with the campaign's proxy task, latency protocol and device, so that the searched
front is judged against the hand-designed family on the same axes. That is the question MnasNet's
Figure 1 answers: at equal latency, does the search beat the family scaled by a width multiplier?

A baseline at width ``w`` is the space's centre (the point that decodes to its reference) in the
same space built with ``width: w``: for the default MnasNet space, MobileNetV2 at ``w``.

**Storage.** Baselines are trials of their own Optuna study, ``<campaign>:baselines``, in the
campaign's storage, each flagged ``baseline`` with its ``width``. The controller never sees them,
they do not count towards the trial budget, and a resumed campaign evaluates only the widths that
are still missing (a failed one is tried again).

**Comparison** (:func:`compare`). The baseline *curve* is the baselines' own front (no baseline
both slower and less accurate than another), joined in order of latency; it rises in both
latency and accuracy, so it can be read either way by linear interpolation (never extrapolated):

- *accuracy gain at equal latency*: for a front point whose latency lies within the curve's
  range, its accuracy minus the curve's accuracy at that latency;
- *speed-up at equal accuracy*: for a front point whose accuracy lies within the curve's range,
  the curve's latency at that accuracy over the point's latency.

The best of each over the searched front is reported, with the point it was found at; a front
entirely outside the curve's range has no figure (``None``) rather than an extrapolated one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import optuna

from nas.campaign.config import CampaignConfig
from nas.campaign.results import pareto_mask
from nas.spec.errors import ConfigError
from search_spaces import get_space

SUFFIX = ":baselines"


def study_name(campaign: str) -> str:
    """The Optuna study holding a campaign's baselines."""
    return f"{campaign}{SUFFIX}"


@dataclass(frozen=True)
class BaselineJob:
    """One baseline to evaluate: the space's reference at ``width``."""

    width: float
    arch_id: str
    spec_yaml: str


@dataclass(frozen=True)
class BaselinePoint:
    """A finished baseline: its width, measured latency and proxy accuracy."""

    width: float
    arch_id: str
    latency_ms: float
    accuracy: float
    reward: float | None = None

    @property
    def label(self) -> str:
        return f"x{self.width:g}"


def baseline_specs(config: CampaignConfig, num_classes: int) -> list[BaselineJob]:
    """The baselines of ``config`` (classes and resolution of its proxy task). A width the space
    cannot express is a :class:`~nas.spec.errors.ConfigError` naming ``baselines.widths[i]``."""
    jobs = []
    for index, width in enumerate(config.baselines.widths):
        options = {**dict(config.space.options), "width": width}
        try:
            space = get_space(config.space.name, **options)
            spec = space.decode(space.center())
            spec = spec.replace(num_classes=num_classes, resolution=config.evaluator.resolution,
                                name=f"{config.space.name}_baseline_x{width:g}")
        except ValueError as error:
            raise ConfigError(f"baselines.widths[{index}]: {width!r} is a width the {config.space.name} space "
                              f"cannot express ({error})") from None
        jobs.append(BaselineJob(float(width), spec.arch_id, spec.to_yaml()))
    return jobs


class BaselineStudy:
    """The baselines' Optuna study in the campaign's storage (created on first use)."""

    def __init__(self, storage_url: str, campaign: str, *, create: bool = True) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        name = study_name(campaign)
        if create:
            self.study = optuna.create_study(study_name=name, storage=storage_url, direction="maximize",
                                             load_if_exists=True)
        else:
            try:
                self.study = optuna.load_study(study_name=name, storage=storage_url)
            except KeyError:
                self.study = None

    def trials(self) -> list[Any]:
        return [] if self.study is None else self.study.get_trials(deepcopy=False)

    def done(self) -> set[str]:
        """The arch ids of the finished baselines."""
        return {t.user_attrs.get("arch_id") for t in self.trials() if t.state.name == "COMPLETE"}

    def missing(self, jobs: Sequence[BaselineJob]) -> list[BaselineJob]:
        done = self.done()
        return [job for job in jobs if job.arch_id not in done]

    def record(self, job: BaselineJob, attrs: dict[str, Any] | None, reward: float | None,
               error: str | None = None) -> None:
        """Store a finished baseline (``attrs`` of its evaluation), or its failure."""
        assert self.study is not None  # created by the driver
        user_attrs = {**(attrs or {}), "baseline": True, "width": job.width, "arch_id": job.arch_id,
                      "spec_yaml": job.spec_yaml}
        if error is not None or reward is None:
            user_attrs["error"] = error or "no reward"
            trial = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs=user_attrs)
        else:
            user_attrs["reward"] = reward
            trial = optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=reward,
                                              user_attrs=user_attrs)
        self.study.add_trial(trial)

    def points(self) -> list[BaselinePoint]:
        """The finished baselines, by width (the newest of each arch)."""
        latest: dict[str, Any] = {}
        for trial in self.trials():
            if trial.state.name == "COMPLETE":
                latest[trial.user_attrs["arch_id"]] = trial
        points = [BaselinePoint(float(t.user_attrs["width"]), t.user_attrs["arch_id"],
                                float(t.user_attrs["latency_ms"]), float(t.user_attrs["accuracy"]),
                                t.user_attrs.get("reward")) for t in latest.values()]
        return sorted(points, key=lambda point: point.width)


def read_baselines(storage_url: str, campaign: str) -> list[BaselinePoint]:
    """A campaign's finished baselines (none if it has no baseline study)."""
    return BaselineStudy(storage_url, campaign, create=False).points()


# ----- the comparison -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """The searched front against the baseline curve (see the module's note)."""

    baselines: int
    front: int
    gain_points: float | None  # accuracy gain at equal latency, in percentage points
    gain_at_ms: float | None
    speedup: float | None  # baseline latency / searched latency, at equal accuracy
    speedup_at_accuracy: float | None

    def describe(self) -> str:
        if self.baselines < 2:
            return (f"baselines: {self.baselines} finished; the comparison needs at least 2 to draw a curve "
                    "(baselines: {widths: [...]})")
        gain = ("no front point within the baselines' latency range" if self.gain_points is None else
                f"{self.gain_points:+.2f} points at {self.gain_at_ms:.3f} ms")
        speed = ("no front point within the baselines' accuracy range" if self.speedup is None else
                 f"{self.speedup:.2f}x at accuracy {self.speedup_at_accuracy:.4f}")
        return (f"against the baseline curve ({self.baselines} widths; {self.front} front points): "
                f"accuracy gain at equal latency {gain}; speed-up at equal accuracy {speed}")


def baseline_curve(points: Iterable[BaselinePoint]) -> tuple[np.ndarray, np.ndarray]:
    """``(latency, accuracy)`` of the baselines' own front, in order of latency."""
    usable = [p for p in points if math.isfinite(p.latency_ms) and math.isfinite(p.accuracy)]
    if not usable:
        return np.zeros(0), np.zeros(0)
    latency = np.array([p.latency_ms for p in usable])
    accuracy = np.array([p.accuracy for p in usable])
    keep = pareto_mask(accuracy, latency)
    order = np.argsort(latency[keep], kind="stable")
    return latency[keep][order], accuracy[keep][order]


def compare(front: Sequence[tuple[float, float]], points: Sequence[BaselinePoint]) -> Comparison:
    """The best accuracy gain at equal latency and speed-up at equal accuracy of the searched
    ``front`` (``(latency_ms, accuracy)`` pairs) against the baselines' curve."""
    latency, accuracy = baseline_curve(points)
    gain = gain_at = speedup = speedup_at = None
    if len(latency) >= 2:
        for point_ms, point_acc in front:
            if latency[0] <= point_ms <= latency[-1]:
                delta = 100.0 * (point_acc - float(np.interp(point_ms, latency, accuracy)))
                if gain is None or delta > gain:
                    gain, gain_at = delta, point_ms
            if accuracy[0] <= point_acc <= accuracy[-1] and point_ms > 0:
                ratio = float(np.interp(point_acc, accuracy, latency)) / point_ms
                if speedup is None or ratio > speedup:
                    speedup, speedup_at = ratio, point_acc
    return Comparison(len(points), len(front), gain, gain_at, speedup, speedup_at)


def front_of(frame: Any) -> list[tuple[float, float]]:
    """``(latency_ms, accuracy)`` of the Pareto front of a trials frame (``results.trials_frame``)."""
    front = frame[frame["pareto"].astype(bool)]
    return [(float(ms), float(acc)) for ms, acc in zip(front["latency_ms"], front["accuracy"])]
