"""Width scaling with each family's rounding rules.

Every family rounds scaled widths to a multiple of the divisor without dropping more than 10%
(:func:`nas.spec.make_divisible`). They differ in the expansion widths and the head:

- ``mnasnet``, ``mixnet``: expansions keep their ratio to the layer input (TF ``expand_ratio``);
  the head is not scaled.
- ``mobilenet_v2``: as ``mnasnet``, but the head grows (never shrinks) with the width.
- ``mobilenet_v3``: expansions are absolute widths scaled on their own; the head conv keeps its
  ratio to the last block (6x), and the hidden layer is scaled (as MindCV does).
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

from nas.spec import ArchSpec, BlockSpec, HeadSpec, SpecError, make_divisible


def _half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def _keep_ratio(width: int, old_base: int, new_base: int) -> int:
    return max(1, _half_up(Fraction(width, old_base) * new_base))


def scale_spec(spec: ArchSpec, width: float, divisor: int = 8) -> ArchSpec:
    """Return ``spec`` with every width scaled by ``width`` (see the module docstring)."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.05 <= width <= 8.0:
        raise SpecError("width", width, "must be a number in [0.05, 8]")
    if width == 1.0:
        return spec

    def scale(channels: int) -> int:
        return make_divisible(channels * width, divisor)

    stem = dataclasses.replace(spec.stem, channels=scale(spec.stem.channels))
    old_in, new_in = spec.stem.channels, stem.channels
    blocks: list[BlockSpec] = []
    for block in spec.blocks:
        new_out = scale(block.out)
        expand = None
        if block.expand is not None:
            if spec.family == "mobilenet_v3":
                expand = tuple(scale(w) for w in block.expand)
            else:
                old_ins = [old_in] + [block.out] * (block.repeats - 1)
                new_ins = [new_in] + [new_out] * (block.repeats - 1)
                expand = tuple(_keep_ratio(w, o, n) for w, o, n in zip(block.expand, old_ins, new_ins))
        blocks.append(dataclasses.replace(block, out=new_out, expand=expand))
        old_in, new_in = block.out, new_out
    head = spec.head
    if spec.family == "mobilenet_v3":
        hidden = scale(head.hidden) if head.hidden is not None else None
        head = HeadSpec(kind=head.kind, act=head.act, hidden=hidden,
                        channels=_keep_ratio(head.channels, spec.blocks[-1].out, blocks[-1].out))
    elif spec.family == "mobilenet_v2" and width > 1.0:
        head = dataclasses.replace(head, channels=scale(head.channels))
    suffix = f"_x{width:g}"
    return dataclasses.replace(spec, stem=stem, blocks=tuple(blocks), head=head, name=spec.name + suffix)
