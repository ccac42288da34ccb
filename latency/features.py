"""Analytic features of a network for the fitted latency predictor (:mod:`latency.predictor`).

Every piece of a network is described as the fused kernels it runs, in the style of nn-Meter
(a convolution, its batch norm and its activation are one kernel):

- ``conv{k}.madds``: full convolutions (the stem, ``conv`` layers, the head's 1x1 conv), by kernel;
- ``pw.madds.{stage}``: pointwise (1x1) convolutions, by the spatial size they run at
  (``s112``: 112 px and above, ``s56``, ``s28``, ``s14``, ``s7``: below 14), since the same work
  runs at a different speed on a wide, shallow tensor than on a narrow, deep one;
- ``dw{k}.madds``: depthwise convolutions, by kernel; ``dw.s2``: the elements of strided ones;
- ``pw.elems`` and ``dw.elems``: the tensor elements those kernels read and write (memory traffic);
- ``act.{kind}.elems``: elements passed through each activation (hard-swish and swish cost more
  than ReLU);
- ``se.elems``, ``se.madds`` and ``se.count``: squeeze-and-excitation (a global pool and a
  rescale over the expanded tensor, plus two tiny 1x1 convs);
- ``add.elems``: residual additions; ``dense.madds``: the head's dense layers;
- ``kernels``: how many kernels are launched (each one costs a fixed dispatch time).

MAdds and elements are in millions; the MAdds features add up to :func:`nas.spec.profile.profile`'s
count exactly. The model is then linear (or boosted trees) over the sums of
these per-layer features. Pure Python: no MindSpore.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nas.spec.arch import ArchSpec
from nas.spec.layers import LayerPlan, plan_layers, stem_output_size
from nas.spec.parts import split_channels

MEGA = 1e6
STAGES = ((112, "s112"), (56, "s56"), (28, "s28"), (14, "s14"), (0, "s7"))


@dataclass(frozen=True)
class LayerFeatures:
    """The features one piece of a network contributes (``name``: stem, blocks.i.j, head)."""

    name: str
    values: tuple[tuple[str, float], ...]

    def as_dict(self) -> dict[str, float]:
        return dict(self.values)


def _stage(size: int) -> str:
    return next(label for low, label in STAGES if size >= low)


class _Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, name: str, value: float) -> None:
        if value:
            self.counts[name] += value

    def conv(self, c_in: int, c_out: int, kernel: int, size_out: int, act: str | None) -> None:
        self.add(f"conv{kernel}.madds", c_in * c_out * kernel * kernel * size_out * size_out / MEGA)
        self.add("kernels", 1)
        if act:
            self.add(f"act.{act}.elems", c_out * size_out * size_out / MEGA)

    def pointwise(self, c_in: int, c_out: int, groups: int, size: int, act: str | None) -> None:
        parts = zip(split_channels(c_in, groups), split_channels(c_out, groups))
        self.add(f"pw.madds.{_stage(size)}", sum(a * b for a, b in parts) * size * size / MEGA)
        self.add("pw.elems", (c_in + c_out) * size * size / MEGA)
        self.add("kernels", groups)
        if act:
            self.add(f"act.{act}.elems", c_out * size * size / MEGA)

    def depthwise(self, channels: int, kernel: int, size_in: int, size_out: int, stride: int) -> None:
        self.add(f"dw{kernel}.madds", channels * kernel * kernel * size_out * size_out / MEGA)
        self.add("dw.elems", channels * (size_in * size_in + size_out * size_out) / MEGA)
        if stride > 1:
            self.add("dw.s2", channels * size_out * size_out / MEGA)
        self.add("kernels", 1)

    def values(self, name: str) -> LayerFeatures:
        return LayerFeatures(name, tuple(sorted((key, float(value)) for key, value in self.counts.items())))


def _layer(plan: LayerPlan) -> LayerFeatures:
    tally = _Tally()
    if plan.kind == "conv":
        tally.conv(plan.in_channels, plan.out_channels, plan.kernel[0], plan.output_size, plan.act)
    else:
        if plan.has_expand:
            tally.pointwise(plan.in_channels, plan.mid_channels, plan.expand_groups, plan.input_size, plan.act)
        for channels, kernel in zip(plan.kernel_splits(), plan.kernel):
            tally.depthwise(channels, kernel, plan.input_size, plan.output_size, plan.stride)
        if len(plan.kernel) > 1:
            tally.add("kernels", 2)  # the split and the concatenation of a mixed conv
        tally.add(f"act.{plan.act}.elems", plan.mid_channels * plan.output_size ** 2 / MEGA)
    if plan.se_channels:
        tally.add("se.elems", 2 * plan.mid_channels * plan.output_size ** 2 / MEGA)
        tally.add("se.madds", 2 * plan.mid_channels * plan.se_channels / MEGA)
        tally.add("se.count", 1)
        tally.add("kernels", 5)
    if plan.kind != "conv":
        tally.pointwise(plan.mid_channels, plan.out_channels, plan.project_groups, plan.output_size, None)
    if plan.skip == "identity":
        tally.add("add.elems", plan.out_channels * plan.output_size ** 2 / MEGA)
        tally.add("kernels", 1)
    elif plan.skip == "pool":
        tally.add("add.elems", 2 * plan.out_channels * plan.output_size ** 2 / MEGA)
        tally.add("kernels", 2)
    return tally.values(plan.name)


def layer_features(spec: ArchSpec, resolution: int | None = None) -> list[LayerFeatures]:
    """The features of the stem, of every layer and of the head of ``spec`` at ``resolution``."""
    size = resolution or spec.resolution
    stem = _Tally()
    stem.conv(spec.in_channels, spec.stem.channels, spec.stem.kernel, stem_output_size(spec, size), spec.stem.act)
    pieces = [stem.values("stem")]
    plans = plan_layers(spec, size)
    pieces.extend(_layer(plan) for plan in plans)
    head = _Tally()
    last = plans[-1]
    head.conv(last.out_channels, spec.head.channels, 1, last.output_size, spec.head.act)
    head.add("pool.elems", spec.head.channels * last.output_size ** 2 / MEGA)
    width = spec.head.channels
    if spec.head.hidden is not None:
        head.add("dense.madds", width * spec.head.hidden / MEGA)
        head.add("kernels", 2)
        width = spec.head.hidden
    head.add("dense.madds", width * spec.num_classes / MEGA)
    head.add("kernels", 2)
    pieces.append(head.values("head"))
    return pieces


def network_features(spec: ArchSpec, resolution: int | None = None) -> dict[str, float]:
    """The sums of :func:`layer_features` over the whole network."""
    total: Counter[str] = Counter()
    for piece in layer_features(spec, resolution):
        for key, value in piece.values:
            total[key] += value
    return dict(total)
