"""Width scaling with each family's rounding rules.

Every family rounds scaled widths to a multiple of the divisor without dropping more than 10%
(:func:`nas.spec.parts.make_divisible`). They differ in the expansion widths and the head:

- ``mnasnet``, ``mixnet``: expansions keep their ratio to the layer input (TF ``expand_ratio``);
  the head is not scaled.
- ``mobilenet_v2``: as ``mnasnet``, but the head grows (never shrinks) with the width.
- ``mobilenet_v3``: expansions are absolute widths scaled on their own; the head conv keeps its
  ratio to the last block (6x), and the hidden layer is scaled (as MindCV does).
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

from nas.spec.parts import BlockSpec, HeadSpec, StemSpec, make_divisible


def _half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def _keep_ratio(width: int, old_base: int, new_base: int) -> int:
    return max(1, _half_up(Fraction(width, old_base) * new_base))


def scale_parts(stem: StemSpec, blocks: tuple[BlockSpec, ...], head: HeadSpec, family: str, width: float,
                divisor: int = 8) -> tuple[StemSpec, tuple[BlockSpec, ...], HeadSpec]:
    """The stem, blocks and head with every width scaled by ``width`` (see the module docstring).
    :meth:`nas.spec.ArchSpec.scaled` checks ``width`` and puts the parts back together."""

    def scale(channels: int) -> int:
        return make_divisible(channels * width, divisor)

    new_stem = dataclasses.replace(stem, channels=scale(stem.channels))
    old_in, new_in = stem.channels, new_stem.channels
    new_blocks: list[BlockSpec] = []
    for block in blocks:
        new_out = scale(block.out)
        expand = None
        if block.expand is not None:
            if family == "mobilenet_v3":
                expand = tuple(scale(w) for w in block.expand)
            else:
                old_ins = [old_in] + [block.out] * (block.repeats - 1)
                new_ins = [new_in] + [new_out] * (block.repeats - 1)
                expand = tuple(_keep_ratio(w, o, n) for w, o, n in zip(block.expand, old_ins, new_ins))
        new_blocks.append(dataclasses.replace(block, out=new_out, expand=expand))
        old_in, new_in = block.out, new_out
    new_head = head
    if family == "mobilenet_v3":
        hidden = scale(head.hidden) if head.hidden is not None else None
        new_head = HeadSpec(kind=head.kind, act=head.act, hidden=hidden,
                            channels=_keep_ratio(head.channels, blocks[-1].out, new_blocks[-1].out))
    elif family == "mobilenet_v2" and width > 1.0:
        new_head = dataclasses.replace(head, channels=scale(head.channels))
    return new_stem, tuple(new_blocks), new_head
