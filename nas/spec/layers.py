"""The layer plan: a spec unrolled into concrete layers with their widths and sizes.

One walk of the spec, shared by the builder, the analytic profile and the latency tables, so
that they can never disagree about a width, a stride or where a residual applies.
Pure Python.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nas.spec.arch import ArchSpec
from nas.spec.parts import split_channels


@dataclass(frozen=True)
class LayerPlan:
    """One concrete layer of a block (``blocks.<block>.<index>`` in parameter names)."""

    block: int
    index: int
    kind: str
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: int
    se_channels: int
    se_gate: str
    se_act: str
    act: str
    skip: str  # effective: "identity" only where stride is 1 and widths match
    expand_groups: int
    project_groups: int
    input_size: int
    output_size: int

    @property
    def name(self) -> str:
        return f"blocks.{self.block}.{self.index}"

    @property
    def has_expand(self) -> bool:
        return self.kind == "mbconv" and self.mid_channels != self.in_channels

    def kernel_splits(self) -> tuple[int, ...]:
        """Channels per kernel group of the (mixed) depthwise conv."""
        return split_channels(self.mid_channels, len(self.kernel))

    def signature(self) -> str:
        """Canonical text key of this layer for latency look-up tables."""
        kernel = ".".join(str(k) for k in self.kernel)
        se = f"se{self.se_channels}{self.se_gate[0]}{self.se_act}" if self.se_channels else "se0"
        return (f"{self.kind}|i{self.in_channels}|m{self.mid_channels}|o{self.out_channels}|k{kernel}"
                f"|s{self.stride}|{se}|{self.act}|{self.skip}|g{self.expand_groups}.{self.project_groups}"
                f"|h{self.input_size}")


def output_size(size: int, stride: int) -> int:
    """Spatial size after a conv with odd kernel, 'same'-style padding and this stride."""
    return math.ceil(size / stride)


def stem_output_size(spec: ArchSpec, resolution: int | None = None) -> int:
    return output_size(resolution or spec.resolution, spec.stem.stride)


def plan_layers(spec: ArchSpec, resolution: int | None = None) -> list[LayerPlan]:
    """Unroll ``spec`` into its layers at ``resolution`` (default: the spec's)."""
    size = stem_output_size(spec, resolution)
    channels = spec.stem.channels
    layers: list[LayerPlan] = []
    for block_index, block in enumerate(spec.blocks):
        for index in range(block.repeats):
            stride = block.layer_stride(index)
            if block.kind == "mbconv":
                assert block.expand is not None
                mid = block.expand[index]
            elif block.kind == "dwsep":
                mid = channels
            else:
                mid = block.out
            se_channels = block.se.reduced_channels(channels, mid) if block.se is not None else 0
            skip = block.skip
            if skip == "identity" and not (stride == 1 and channels == block.out):
                skip = "none"
            out_size = output_size(size, stride)
            layers.append(LayerPlan(
                block=block_index, index=index, kind=block.kind, in_channels=channels,
                mid_channels=mid, out_channels=block.out, kernel=block.kernel, stride=stride,
                se_channels=se_channels,
                se_gate=block.se.gate if block.se is not None else "sigmoid",
                se_act=block.se.act if block.se is not None else "relu",
                act=block.act, skip=skip, expand_groups=block.expand_groups,
                project_groups=block.project_groups, input_size=size, output_size=out_size))
            channels, size = block.out, out_size
    return layers
