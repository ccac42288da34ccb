"""NetAdapt proposals as spec edits (MobileNetV3's proposal types).

A :class:`Target` is one thing NetAdapt may shrink:

- ``expand``: the expansion width of one layer (one entry of an mbconv block's ``expand``),
  where the layer has an expansion conv;
- ``group``: one residual group (see :mod:`netadapt.channels`): the ``out`` of every block in it
  (and the stem's channels when the stem is in it). An mbconv layer without an expansion conv
  reads the group directly, so its ``expand`` follows the group's width;
- ``head``: the head conv's channels; ``hidden``: the mobilenet_v3 head's hidden width.

Depthwise widths follow their producer and SE widths are derived from the spec's
:class:`~nas.spec.parts.SESpec`, so they follow by construction. A width is *valid* when the edited
spec validates, keeps the structure (no residual, expansion conv or group appears or vanishes)
and weight surgery can reach it (:func:`netadapt.surgery.check_reachable`).

Pure Python.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator

from nas.spec.arch import ArchSpec
from nas.spec.errors import SpecError
from nas.spec.layers import plan_layers
from netadapt.channels import residual_groups
from netadapt.errors import SurgeryError
from netadapt.surgery import check_reachable

TARGET_KINDS = ("expand", "group", "head", "hidden")


@dataclass(frozen=True)
class Target:
    """One shrinkable width of a spec."""

    kind: str
    block: int = -1
    layer: int = -1
    producers: tuple[int, ...] = ()
    label: str = ""

    @property
    def key(self) -> str:
        """Stable text id, e.g. ``expand:b3.l1``, ``group:b1``, ``group:stem+b0``, ``head``."""
        if self.kind == "expand":
            return f"expand:b{self.block}.l{self.layer}"
        if self.kind == "group":
            return f"group:{self.label}"
        return self.kind


@dataclass(frozen=True)
class TargetOptions:
    """Which kinds of target to propose. The stem (the group that holds it) and the head are optional."""

    expand: bool = True
    groups: bool = True
    stem: bool = True
    head: bool = True


def targets(spec: ArchSpec, options: TargetOptions = TargetOptions()) -> list[Target]:
    """Every target of ``spec`` that ``options`` allow, in network order."""
    found: list[Target] = []
    if options.groups:
        for group in residual_groups(spec):
            if group.frozen is not None or (0 in group.producers and not options.stem):
                continue
            found.append(Target("group", producers=group.producers, label=group.name))
    if options.expand:
        for plan in plan_layers(spec):
            if plan.has_expand:
                found.append(Target("expand", block=plan.block, layer=plan.index))
    if options.head:
        found.append(Target("head"))
        if spec.head.hidden is not None:
            found.append(Target("hidden"))
    return found


def width_of(spec: ArchSpec, target: Target) -> int:
    """The current width of ``target`` in ``spec``."""
    if target.kind == "expand":
        expand = spec.blocks[target.block].expand
        assert expand is not None
        return expand[target.layer]
    if target.kind == "group":
        first = target.producers[0]
        return spec.stem.channels if first == 0 else spec.blocks[first - 1].out
    if target.kind == "head":
        return spec.head.channels
    if target.kind == "hidden":
        assert spec.head.hidden is not None
        return spec.head.hidden
    raise ValueError(f"target.kind: must be one of {list(TARGET_KINDS)} (got {target.kind!r})")


def with_width(spec: ArchSpec, target: Target, width: int) -> ArchSpec:
    """``spec`` with ``target`` at ``width``; raises ``SpecError``/``SurgeryError`` when the width is
    not valid (see the module docstring)."""
    if target.kind == "expand":
        block = spec.blocks[target.block]
        assert block.expand is not None
        expand = list(block.expand)
        expand[target.layer] = width
        edited = spec.with_block(target.block, expand=tuple(expand))
    elif target.kind == "group":
        edited = spec.with_group_width(target.producers, width)
    elif target.kind == "head":
        edited = spec.replace(head=dataclasses.replace(spec.head, channels=width))
    elif target.kind == "hidden":
        edited = spec.replace(head=dataclasses.replace(spec.head, hidden=width))
    else:
        raise ValueError(f"target.kind: must be one of {list(TARGET_KINDS)} (got {target.kind!r})")
    check_reachable(spec, edited)
    return edited


def smaller_widths(current: int, step: int, minimum: int | None = None) -> list[int]:
    """Multiples of ``step`` below ``current``, largest first, down to ``minimum`` (default ``step``)."""
    if step < 1:
        raise ValueError(f"step_multiple: must be >= 1 (got {step!r})")
    low = step if minimum is None else max(1, minimum)
    top = (current - 1) // step * step
    return [width for width in range(top, low - 1, -step) if width >= low]


def valid_widths(spec: ArchSpec, target: Target, step: int,
                 minimum: int | None = None) -> Iterator[tuple[int, ArchSpec]]:
    """``(width, spec)`` for every valid smaller width of ``target``, largest first."""
    for width in smaller_widths(width_of(spec, target), step, minimum):
        try:
            yield width, with_width(spec, target, width)
        except (SpecError, SurgeryError):
            continue


@dataclass(frozen=True)
class Proposal:
    """One candidate of an iteration: ``target`` shrunk to ``width``, with its latency estimate."""

    target: Target
    width_before: int
    width: int
    spec: ArchSpec
    predicted_ms: float  # the look-up table's prediction for the whole network
    estimated_ms: float  # measured latency of the current network + the predicted change

    @property
    def key(self) -> str:
        return self.target.key


def propose(spec: ArchSpec, target: Target, constraint_ms: float, estimate: Callable[[ArchSpec], tuple[float, float]],
            step: int, minimum: int | None = None) -> tuple[Proposal | None, float | None]:
    """The largest valid width of ``target`` whose estimated latency meets ``constraint_ms``.

    ``estimate(spec)`` returns ``(predicted, estimated)`` milliseconds. Returns the proposal (or
    None) and the smallest estimate seen, so a caller can say how close the target came.
    """
    best_seen: float | None = None
    before = width_of(spec, target)
    for width, candidate in valid_widths(spec, target, step, minimum):
        predicted, estimated = estimate(candidate)
        best_seen = estimated if best_seen is None else min(best_seen, estimated)
        if estimated <= constraint_ms:
            return Proposal(target, before, width, candidate, predicted, estimated), best_seen
    return None, best_seen

