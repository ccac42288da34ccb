"""The parts of an architecture spec: stem, blocks (with squeeze-and-excite) and head.

Frozen dataclasses, validated on construction: a bad value raises :class:`SpecError` naming
the field and the value. :class:`~nas.spec.arch.ArchSpec` puts the parts together. Pure Python.

Block semantics follow tensorflow/tpu's MnasNet code (Tan et al., CVPR 2019): a 1x1 expansion
(omitted when it would not change the width), a depthwise k x k conv, optional SE, a linear 1x1
projection; an identity residual only where stride is 1 and the widths match. Widths are rounded
to multiples of 8, never dropping more than 10% (:func:`make_divisible`). MixConv (Tan & Le,
2019) splits channels into groups of equal size with the remainder in the first group
(:func:`split_channels`); grouped 1x1 convs use the same rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.spec.checks import check_choice, check_int, check_number, is_int
from nas.spec.errors import SpecError

ACTIVATIONS = ("relu", "relu6", "hswish", "swish")
GATES = ("sigmoid", "hsigmoid")
SE_BASES = ("in", "expand")
SKIPS = ("none", "identity", "pool")
BLOCK_KINDS = ("conv", "dwsep", "mbconv")
HEAD_KINDS = ("mnasnet", "mobilenet_v3")
PADDINGS = ("symmetric", "same")
FAMILIES = ("mnasnet", "mobilenet_v2", "mobilenet_v3", "mixnet")
MAX_CHANNELS = 16384
MAX_REPEATS = 32


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without dropping more than 10%."""
    if divisor == 1:
        return max(1, int(value)) if min_value is None else max(min_value, int(value))
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def split_channels(channels: int, groups: int) -> tuple[int, ...]:
    """MixConv's split rule: equal parts, the remainder added to the first group."""
    parts = [channels // groups] * groups
    parts[0] += channels - sum(parts)
    return tuple(parts)


def _check_kernel(path: str, value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise SpecError(path, value, "must be a non-empty tuple of odd kernel sizes")
    for size in value:
        if not is_int(size) or size < 1 or size > 15 or size % 2 == 0:
            raise SpecError(path, value, "kernel sizes must be odd integers in [1, 15]")


@dataclass(frozen=True)
class SESpec:
    """Squeeze-and-excite: reduced width from ``ratio`` times the block input or expansion width."""

    ratio: float
    base: str = "in"
    gate: str = "sigmoid"
    divisor: int = 1
    act: str = "relu"

    def __post_init__(self) -> None:
        check_number("ratio", self.ratio, 0.0, 1.0, low_open=True, error=SpecError)
        check_choice("base", self.base, SE_BASES, error=SpecError)
        check_choice("gate", self.gate, GATES, error=SpecError)
        check_int("divisor", self.divisor, 1, 64, error=SpecError)
        check_choice("act", self.act, ACTIVATIONS, error=SpecError)

    def reduced_channels(self, in_channels: int, mid_channels: int) -> int:
        """Width of the squeeze layer for a layer with these input and mid widths."""
        base = in_channels if self.base == "in" else mid_channels
        return make_divisible(base * self.ratio, self.divisor)


@dataclass(frozen=True)
class StemSpec:
    """The first convolution: ``kernel`` x ``kernel``, stride ``stride``, BN and activation."""

    channels: int
    kernel: int = 3
    stride: int = 2
    act: str = "relu"
    padding: str = "symmetric"

    def __post_init__(self) -> None:
        check_int("channels", self.channels, 1, MAX_CHANNELS, error=SpecError)
        _check_kernel("kernel", (self.kernel,))
        check_int("stride", self.stride, 1, 2, error=SpecError)
        check_choice("act", self.act, ACTIVATIONS, error=SpecError)
        check_choice("padding", self.padding, PADDINGS, error=SpecError)


@dataclass(frozen=True)
class BlockSpec:
    """One block: a layer repeated ``repeats`` times; only the first layer strides.

    ``kind`` is ``conv`` (regular k x k conv), ``dwsep`` (depthwise then 1x1 projection) or
    ``mbconv`` (1x1 expansion to ``expand[i]`` channels, depthwise, 1x1 linear projection;
    the expansion conv is omitted where ``expand[i]`` equals the layer's input width).
    Several kernel sizes mean a mixed depthwise conv (MixConv). ``skip='identity'`` adds a
    residual wherever stride is 1 and input and output widths match; ``skip='pool'`` adds an
    average-pooled, zero-padded (or truncated) copy of the input to every layer.
    """

    kind: str
    out: int
    kernel: tuple[int, ...] = (3,)
    stride: int = 1
    repeats: int = 1
    expand: tuple[int, ...] | None = None
    se: SESpec | None = None
    act: str = "relu"
    skip: str = "identity"
    expand_groups: int = 1
    project_groups: int = 1

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, BLOCK_KINDS, error=SpecError)
        check_int("out", self.out, 1, MAX_CHANNELS, error=SpecError)
        _check_kernel("kernel", self.kernel)
        check_int("stride", self.stride, 1, 2, error=SpecError)
        check_int("repeats", self.repeats, 1, MAX_REPEATS, error=SpecError)
        if self.kind == "mbconv":
            if not isinstance(self.expand, tuple) or len(self.expand) != self.repeats:
                raise SpecError("expand", self.expand,
                                f"an mbconv block needs one expansion width per layer ({self.repeats})")
            for width in self.expand:
                check_int("expand", width, 1, MAX_CHANNELS, error=SpecError)
        elif self.expand is not None:
            raise SpecError("expand", self.expand, f"a {self.kind} block has no expansion width")
        if self.se is not None and not isinstance(self.se, SESpec):
            raise SpecError("se", self.se, "must be an SESpec or None")
        check_choice("act", self.act, ACTIVATIONS, error=SpecError)
        check_choice("skip", self.skip, SKIPS, error=SpecError)
        check_int("expand_groups", self.expand_groups, 1, 16, error=SpecError)
        check_int("project_groups", self.project_groups, 1, 16, error=SpecError)
        if self.kind == "conv":
            if len(self.kernel) > 1:
                raise SpecError("kernel", self.kernel, "a regular conv block takes a single kernel size")
            if self.expand_groups != 1 or self.project_groups != 1:
                raise SpecError("expand_groups", self.expand_groups, "a regular conv block has no grouped 1x1 convs")
        if self.kind == "dwsep" and self.expand_groups != 1:
            raise SpecError("expand_groups", self.expand_groups, "a dwsep block has no expansion conv")

    def layer_stride(self, index: int) -> int:
        """Stride of layer ``index`` of this block."""
        return self.stride if index == 0 else 1


@dataclass(frozen=True)
class HeadSpec:
    """The head. ``mnasnet``: 1x1 conv + BN + act, pool, dropout, classifier.

    ``mobilenet_v3``: 1x1 conv + BN + act, pool, a ``hidden``-wide dense layer without BN plus
    act, dropout, classifier.
    """

    kind: str
    channels: int
    act: str = "relu"
    hidden: int | None = None

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, HEAD_KINDS, error=SpecError)
        check_int("channels", self.channels, 1, MAX_CHANNELS, error=SpecError)
        check_choice("act", self.act, ACTIVATIONS, error=SpecError)
        if self.kind == "mobilenet_v3":
            check_int("hidden", self.hidden, 1, MAX_CHANNELS, error=SpecError)
        elif self.hidden is not None:
            raise SpecError("hidden", self.hidden, "only a mobilenet_v3 head has a hidden layer")
