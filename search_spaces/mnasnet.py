"""MnasNet's factorized hierarchical search space (Tan et al. 2019, section 4.1).

The network is the reference's stem, its blocks and its head (MobileNetV2 by default:
(t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1),
stem 32, head 1280). Every block repeats one searched layer; per block (decision names
``b<i>_<what>``, blocks counted from 0):

- ``op``: ``conv`` (regular k x k conv), ``dwsep`` (depthwise-separable: depthwise k x k then a
  linear 1x1 projection; written as an MBConv whose expansion width equals its input, the TF
  MnasNet convention, so MobileNetV2's t=1 block and MnasNet-A1's SepConv are reproduced
  exactly), ``mbconv_e3``, ``mbconv_e6`` (expansion width = ratio x the layer's input width);
- ``kernel``: 3 or 5;
- ``se``: squeeze-and-excite ratio 0 (none) or 0.25, MnasNet-style (squeeze width from the
  block input, sigmoid gate, the block's activation inside);
- ``skip``: ``pool``, ``identity`` or ``none``. The spec applies ``identity`` only where a
  layer's stride is 1 and its input and output widths match (every layer but possibly the
  first), exactly as the paper says the residual is only legal where shapes match;
- ``filters``: 0.75, 1.0 or 1.25 x the reference width, rounded to a multiple of 8 (see
  :func:`search_spaces.base.relative_widths`: 0.75 x 16 gives 8, so that no two choices
  collapse to one width);
- ``layers``: -1, 0 or +1 x the reference repeat count. **A block whose reference has one
  layer keeps one layer on -1** (the count is clamped to 1): a block is never removed, because
  its stride and width change belong to the skeleton. So for those blocks -1 and 0 decode to
  the same spec, and ``encode`` returns 0.

Only a block's first layer strides (the spec enforces it). That is 4*2*2*3*3*3 = 432 points
per block and 432^7 for the default seven blocks.

The fixed parts (stem, head, BN settings, padding, dropout, family and activation) come from
the reference, so the centre of the default space, :meth:`MnasNetSpace.center`, decodes to
``references.get("mobilenet_v2")`` exactly (ReLU6 included); ``activation: relu`` gives the
TF MnasNet convention. Centred on ``mnasnet_a1`` or ``mnasnet_b1`` the space reproduces those.

Options (all overridable from YAML): ``reference``, ``width`` (multiplier applied to the
reference first), ``ops``, ``expansions`` (e.g. ``[3, 4, 6]``), ``kernels``, ``se_ratios``
(``[0]`` is the no-SE space that produced MnasNet-B1), ``skips``, ``filter_multipliers``,
``layer_deltas``, ``activation``, ``resolution``, ``num_classes``, ``dropout``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from nas.spec import ACTIVATIONS, SKIPS, ArchSpec, BlockSpec, SESpec
from search_spaces.base import (
    Decision,
    FactorizedSpace,
    NotInSpaceError,
    SpaceOptionError,
    check_number_tuple,
    check_round_trip,
    check_str_tuple,
    configured_reference,
    inverse_lookup,
    kernel_choices,
    relative_widths,
)

OPS = ("conv", "dwsep", "mbconv")
DECISION_KINDS = ("op", "kernel", "se", "skip", "filters", "layers")


@dataclass(frozen=True)
class MnasNetOptions:
    """Options of the MnasNet space (see the module docstring)."""

    reference: str = "mobilenet_v2"
    width: float = 1.0
    ops: tuple[str, ...] = OPS
    expansions: tuple[float, ...] = (3, 6)
    kernels: tuple[int, ...] = (3, 5)
    se_ratios: tuple[float, ...] = (0.0, 0.25)
    skips: tuple[str, ...] = ("pool", "identity", "none")
    filter_multipliers: tuple[float, ...] = (0.75, 1.0, 1.25)
    layer_deltas: tuple[int, ...] = (-1, 0, 1)
    activation: str | None = None
    resolution: int | None = None
    num_classes: int | None = None
    dropout: float | None = None

    def __post_init__(self) -> None:
        check_str_tuple("ops", self.ops, OPS)
        if "mbconv" in self.ops:
            check_number_tuple("expansions", self.expansions, low=1, high=16, low_open=True)
        kernel_choices("kernels", self.kernels, allow_mixed=False)
        check_number_tuple("se_ratios", self.se_ratios, low=0, high=1)
        check_str_tuple("skips", self.skips, SKIPS)
        check_number_tuple("filter_multipliers", self.filter_multipliers, low=0, high=8, low_open=True)
        check_number_tuple("layer_deltas", self.layer_deltas, low=-8, high=8, integer=True)
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise SpaceOptionError("activation", self.activation, f"must be one of {list(ACTIVATIONS)}")


@dataclass(frozen=True)
class _Slot:
    """What the skeleton fixes for one block, and the reference's own choices there."""

    out: int
    repeats: int
    stride: int
    act: str
    reference_choices: dict[str, Any]


def _op_name(expansion: float) -> str:
    return f"mbconv_e{expansion:g}"


def _expanded(ratio: float, width: int) -> int:
    return max(1, int(ratio * width + 0.5))


def _op_of(block: BlockSpec, in_channels: int, expansions: tuple[float, ...]) -> str | None:
    """The op choice that gives this block's layers, if one does."""
    if block.kind != "mbconv":
        return block.kind
    assert block.expand is not None
    ins = [in_channels] + [block.out] * (block.repeats - 1)
    if list(block.expand) == ins:
        return "dwsep"
    for ratio in expansions:
        if all(width == _expanded(ratio, layer_in) for width, layer_in in zip(block.expand, ins)):
            return _op_name(ratio)
    return None


class MnasNetSpace(FactorizedSpace):
    """MnasNet's factorized hierarchical space around a reference (default MobileNetV2)."""

    def __init__(self, name: str = "mnasnet", **options: Any) -> None:
        settings: MnasNetOptions = self._configure(name, MnasNetOptions, options)
        reference = configured_reference(settings)
        if settings.activation is not None:
            reference = reference.replace(
                stem=dataclasses.replace(reference.stem, act=settings.activation),
                head=dataclasses.replace(reference.head, act=settings.activation))
        self.reference = reference
        self._kernels = kernel_choices("kernels", settings.kernels, allow_mixed=False)
        op_choices: list[str] = [op for op in ("conv", "dwsep") if op in settings.ops]
        if "mbconv" in settings.ops:
            op_choices += [_op_name(ratio) for ratio in settings.expansions]
        self._expansion_of = {_op_name(ratio): ratio for ratio in settings.expansions}
        self._slots: list[_Slot] = []
        self._filter_widths: list[dict[float, int]] = []
        decisions: list[Decision] = []
        channels = reference.stem.channels
        for index, block in enumerate(reference.blocks):
            act = settings.activation or block.act
            se_ratio = 0.0 if block.se is None else block.se.ratio
            reference_choices = {"op": _op_of(block, channels, settings.expansions), "kernel": block.kernel[0],
                                 "se": se_ratio,
                                 "skip": block.skip, "filters": 1.0, "layers": 0}
            self._slots.append(_Slot(out=block.out, repeats=block.repeats, stride=block.stride, act=act,
                                     reference_choices=reference_choices))
            self._filter_widths.append(relative_widths(block.out, settings.filter_multipliers))
            decisions += [
                Decision(f"b{index}_op", tuple(op_choices)),
                Decision(f"b{index}_kernel", tuple(self._kernels)),
                Decision(f"b{index}_se", tuple(float(r) for r in settings.se_ratios)),
                Decision(f"b{index}_skip", tuple(settings.skips)),
                Decision(f"b{index}_filters", tuple(float(m) for m in settings.filter_multipliers)),
                Decision(f"b{index}_layers", tuple(settings.layer_deltas)),
            ]
            channels = block.out
        self._decisions = tuple(decisions)

    # ----- decode -------------------------------------------------------------------------------

    def _block(self, index: int, point: Mapping[str, Any], in_channels: int) -> BlockSpec:
        slot = self._slots[index]
        out = self._filter_widths[index][point[f"b{index}_filters"]]
        repeats = max(1, slot.repeats + point[f"b{index}_layers"])
        ins = [in_channels] + [out] * (repeats - 1)
        op = point[f"b{index}_op"]
        if op == "conv":
            kind, expand = "conv", None
        elif op == "dwsep":
            kind, expand = "mbconv", tuple(ins)
        else:
            kind, expand = "mbconv", tuple(_expanded(self._expansion_of[op], width) for width in ins)
        ratio = point[f"b{index}_se"]
        se = None if ratio == 0 else SESpec(ratio=float(ratio), base="in", gate="sigmoid", divisor=1, act=slot.act)
        return BlockSpec(kind=kind, out=out, kernel=self._kernels[point[f"b{index}_kernel"]], stride=slot.stride,
                         repeats=repeats, expand=expand, se=se, act=slot.act, skip=point[f"b{index}_skip"])

    def decode(self, decisions: Mapping[str, Any]) -> ArchSpec:
        point = self.validate(decisions)
        blocks = []
        channels = self.reference.stem.channels
        for index in range(len(self._slots)):
            block = self._block(index, point, channels)
            blocks.append(block)
            channels = block.out
        return self._named(self.reference, blocks)

    # ----- encode -------------------------------------------------------------------------------

    def encode(self, spec: ArchSpec) -> dict[str, Any]:
        self._check_block_count(spec, len(self._slots))
        point: dict[str, Any] = {}
        normalized = []
        channels = spec.stem.channels
        for index, (block, slot) in enumerate(zip(spec.blocks, self._slots)):
            where = f"blocks[{index}]"
            ins = [channels] + [block.out] * (block.repeats - 1)
            if block.kind == "dwsep":  # the other spelling of a depthwise-separable layer
                block = dataclasses.replace(block, kind="mbconv", expand=tuple(ins))
            normalized.append(block)
            widths = inverse_lookup(self._filter_widths[index], 1.0)
            point[f"b{index}_filters"] = float(self._lookup(f"{where}.out", f"b{index}_filters", block.out, widths))
            counts = inverse_lookup({delta: max(1, slot.repeats + delta) for delta in self.settings.layer_deltas}, 0)
            point[f"b{index}_layers"] = self._lookup(f"{where}.repeats", f"b{index}_layers", block.repeats, counts)
            op = _op_of(block, channels, self.settings.expansions)
            ops = self.decision(f"b{index}_op").choices
            if op not in ops:
                raise NotInSpaceError(self._name, f"{where}.expand" if block.kind == "mbconv" else f"{where}.kind",
                                      block.expand if block.kind == "mbconv" else block.kind,
                                      f"no choice of decision 'b{index}_op' gives it (choices: {list(ops)})")
            point[f"b{index}_op"] = op
            kernels = {kernel: choice for choice, kernel in self._kernels.items()}
            point[f"b{index}_kernel"] = self._lookup(f"{where}.kernel", f"b{index}_kernel", block.kernel, kernels)
            ratio = 0.0 if block.se is None else block.se.ratio
            ratios = {float(r): float(r) for r in self.settings.se_ratios}
            point[f"b{index}_se"] = self._lookup(f"{where}.se", f"b{index}_se", ratio, ratios)
            skips = {skip: skip for skip in self.settings.skips}
            point[f"b{index}_skip"] = self._lookup(f"{where}.skip", f"b{index}_skip", block.skip, skips)
            channels = block.out
        decoded = self.decode(point)
        check_round_trip(self._name, spec.replace(blocks=tuple(normalized)), decoded)
        return self.validate(point)

    def center(self) -> dict[str, Any]:
        """The reference's own choices (filters 1.0, layers 0); where the space lacks the
        reference's choice, the decision's middle choice."""
        point = {}
        for index, slot in enumerate(self._slots):
            for kind in DECISION_KINDS:
                decision = self.decision(f"b{index}_{kind}")
                wanted = slot.reference_choices[kind]
                try:
                    point[decision.name] = decision.choices[decision.index(wanted)]
                except ValueError:
                    point[decision.name] = decision.choices[len(decision.choices) // 2]
        return point


__all__ = ["MnasNetSpace", "MnasNetOptions"]
