"""Hypothesis strategies for specs: valid ArchSpecs of every kind, for property tests."""
from __future__ import annotations

from hypothesis import strategies as st

from nas.spec import ACTIVATIONS, ArchSpec, BlockSpec, HeadSpec, SESpec, StemSpec


@st.composite
def se_specs(draw: st.DrawFn) -> SESpec | None:
    if draw(st.booleans()):
        return None
    return SESpec(ratio=draw(st.sampled_from([0.125, 0.25, 0.5, 1.0])), base=draw(st.sampled_from(["in", "expand"])),
                  gate=draw(st.sampled_from(["sigmoid", "hsigmoid"])), divisor=draw(st.sampled_from([1, 4, 8])),
                  act=draw(st.sampled_from(ACTIVATIONS)))


@st.composite
def block_specs(draw: st.DrawFn, in_channels: int) -> BlockSpec:
    kind = draw(st.sampled_from(["conv", "dwsep", "mbconv", "mbconv"]))
    out = draw(st.integers(8, 96))
    repeats = draw(st.integers(1, 4))
    kernel = (draw(st.sampled_from([1, 3, 5, 7])),) if kind == "conv" else tuple(
        draw(st.lists(st.sampled_from([3, 5, 7, 9]), min_size=1, max_size=3)))
    expand = None
    if kind == "mbconv":
        if draw(st.booleans()):  # a ratio, possibly non-integer, as block strings write them
            ratio = draw(st.sampled_from([1, 2, 2.3, 2.5, 3, 3.67, 4, 6]))
            ins = [in_channels] + [out] * (repeats - 1)
            expand = tuple(max(8, int(i * ratio + 0.5)) for i in ins)
        else:  # arbitrary absolute widths, as NetAdapt leaves them
            expand = tuple(draw(st.integers(8, 200)) for _ in range(repeats))
    groups = 1 if kind == "conv" else draw(st.sampled_from([1, 1, 2, 3]))
    return BlockSpec(kind=kind, out=out, kernel=kernel, stride=draw(st.sampled_from([1, 2])), repeats=repeats,
                     expand=expand, se=draw(se_specs()), act=draw(st.sampled_from(ACTIVATIONS)),
                     skip=draw(st.sampled_from(["none", "identity", "pool"])),
                     expand_groups=groups if kind == "mbconv" else 1,
                     project_groups=1 if kind == "conv" else draw(st.sampled_from([1, 2])))


@st.composite
def arch_specs(draw: st.DrawFn) -> ArchSpec:
    stem = StemSpec(channels=draw(st.integers(8, 48)), kernel=draw(st.sampled_from([3, 5])),
                    stride=draw(st.sampled_from([1, 2])), act=draw(st.sampled_from(ACTIVATIONS)))
    blocks = []
    channels = stem.channels
    for _ in range(draw(st.integers(1, 5))):
        block = draw(block_specs(channels))
        blocks.append(block)
        channels = block.out
    v3_head = draw(st.booleans())
    head = HeadSpec(kind="mobilenet_v3" if v3_head else "mnasnet", channels=draw(st.integers(16, 256)),
                    act=draw(st.sampled_from(ACTIVATIONS)), hidden=draw(st.integers(16, 256)) if v3_head else None)
    return ArchSpec(stem=stem, blocks=tuple(blocks), head=head,
                    family=draw(st.sampled_from(["mnasnet", "mobilenet_v2", "mobilenet_v3", "mixnet"])),
                    resolution=draw(st.sampled_from([32, 64, 224])), num_classes=draw(st.integers(2, 1000)),
                    dropout=draw(st.sampled_from([0.0, 0.2, 0.25])), bn_momentum=draw(st.sampled_from([0.9, 0.99])),
                    bn_eps=draw(st.sampled_from([1e-5, 1e-3])), padding=draw(st.sampled_from(["symmetric", "same"])),
                    name=draw(st.sampled_from(["generated", "x"])))
