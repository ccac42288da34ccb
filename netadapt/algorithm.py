"""The NetAdapt schedule and selection rules (Yang et al., ECCV 2018; refined for MobileNetV3). Pure Python.

The algorithm, with ``Res`` the measured latency of the network ``Net``::

    Res = measure(Net0)
    while Res > Budget:
        Con = Res - dR_i                          # the schedule below
        for each prunable layer or residual group k:
            n_k = largest width whose estimated latency <= Con   (a look-up table)
            keep the n_k filters of largest L2 norm; slice the next layers' inputs
            short-term fine-tune; evaluate on a held-out split
        pick one proposal (the selection rule below); Net, Res = that proposal
    long-term fine-tune the final network

Schedule (how much latency each iteration must remove), with ``L0`` the initial latency:

- ``decay`` (the authors' code): ``initial_ratio * L0 * decay ** (iteration - 1)``, defaults
  0.025 and 0.96;
- ``fixed`` (MobileNetV3): ``fixed_ratio * L0`` every iteration, default 0.01.

The constraint of an iteration is ``current - reduction``, never below the budget: the last
step stops at the budget instead of overshooting it.

Selection among the fine-tuned proposals:

- ``slope`` (MobileNetV3, the default): the largest accuracy change per latency removed. As in
  the authors' code, minimise ``(acc0 - acc + 1e-6) / (lat0 - lat + 1e-5)``;
- ``accuracy`` (the NetAdapt paper): the highest accuracy (ties: the lower latency).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from nas.spec.checks import check_choice, check_number

SCHEDULES = ("decay", "fixed")
SELECTIONS = ("slope", "accuracy")


@dataclass(frozen=True)
class Schedule:
    kind: str = "decay"
    initial_ratio: float = 0.025
    decay: float = 0.96
    fixed_ratio: float = 0.01

    def __post_init__(self) -> None:
        check_choice("netadapt.schedule", self.kind, SCHEDULES)
        for name in ("initial_ratio", "decay", "fixed_ratio"):
            check_number(f"netadapt.{name}", getattr(self, name), 0.0, 1.0, low_open=True)

    def reduction(self, iteration: int, initial_ms: float) -> float:
        """Milliseconds iteration ``iteration`` (1-based) must remove."""
        if self.kind == "fixed":
            return self.fixed_ratio * initial_ms
        return self.initial_ratio * initial_ms * self.decay ** (iteration - 1)

    def constraint(self, iteration: int, initial_ms: float, current_ms: float, budget_ms: float) -> float:
        return max(current_ms - self.reduction(iteration, initial_ms), budget_ms)


@dataclass(frozen=True)
class Candidate:
    """What selection needs of a proposal: its held-out accuracy and its estimated latency."""

    key: str
    top1: float
    estimated_ms: float


def slope_score(current_top1: float, current_ms: float, candidate: Candidate) -> float:
    """The authors' score, smaller is better: ``(acc0 - acc + 1e-6) / (lat0 - lat + 1e-5)``."""
    return (current_top1 - candidate.top1 + 1e-6) / (current_ms - candidate.estimated_ms + 1e-5)


def select(candidates: Sequence[Candidate], current_top1: float, current_ms: float, rule: str = "slope") -> int:
    """Index of the chosen candidate. Candidates without a finite accuracy are never chosen."""
    if rule not in SELECTIONS:
        raise ValueError(f"netadapt.selection: must be one of {list(SELECTIONS)} (got {rule!r})")
    usable = [i for i, c in enumerate(candidates) if math.isfinite(c.top1) and math.isfinite(c.estimated_ms)]
    if not usable:
        raise ValueError("no proposal has an accuracy to select by")
    if rule == "accuracy":
        return min(usable, key=lambda i: (-candidates[i].top1, candidates[i].estimated_ms, i))
    return min(usable, key=lambda i: (slope_score(current_top1, current_ms, candidates[i]), i))
