"""A MobileNetV3-style search space, centred on MobileNetV3-Large (or -Small).

The skeleton (stem, head, strides, residuals, BN settings, padding) is the reference's. Per block
``i`` (decision names ``b<i>_<what>``):

- ``filters``: 0.75, 1.0 or 1.25 x the reference output width (multiples of 8, as in
  :func:`search_spaces.base.relative_widths`);
- ``layers``: -1, 0 or +1 x the reference layer count (a one-layer block keeps one layer on -1);
- ``kernel``: 3 or 5; the ``kernels`` option also takes MixConv kernel sets, e.g.
  ``kernels: [3, 5, [3, 5], [3, 5, 7]]`` (choice values ``"3.5"``, ``"3.5.7"``);
- ``se``: 0 (none) or 0.25, with MobileNetV3's conventions: the squeeze width is the ratio of
  the *expansion* width made divisible by 8, ReLU inside, hard-sigmoid gate;
- ``act``: ``relu`` or ``hswish``;
- ``l<j>_expand`` for every layer the block can have (reference count + the largest layer
  delta): the layer's expansion width as 0.5, 0.75, 1.0, 1.25 or 1.5 x the reference layer's
  width (an extra layer takes the block's last reference width). The decisions of layers a
  point does not have are unused, and ``encode`` sets them to 1.0.

The centre (every multiplier 1.0, the reference's kernel, SE and activation) decodes to the
reference exactly: ``mobilenet_v3`` to ``references.get("mobilenet_v3_large")`` and
``mobilenet_v3_small`` to ``references.get("mobilenet_v3_small")``. The head is fixed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nas.spec import ACTIVATIONS, ArchSpec, BlockSpec, SESpec
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

SE_CONVENTION: dict[str, Any] = {"base": "expand", "gate": "hsigmoid", "divisor": 8, "act": "relu"}


@dataclass(frozen=True)
class MobileNetV3Options:
    """Options of the MobileNetV3-style space (see the module docstring)."""

    reference: str = "mobilenet_v3_large"
    width: float = 1.0
    kernels: tuple[Any, ...] = (3, 5)
    se_ratios: tuple[float, ...] = (0.0, 0.25)
    activations: tuple[str, ...] = ("relu", "hswish")
    filter_multipliers: tuple[float, ...] = (0.75, 1.0, 1.25)
    layer_deltas: tuple[int, ...] = (-1, 0, 1)
    expand_multipliers: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    resolution: int | None = None
    num_classes: int | None = None
    dropout: float | None = None

    def __post_init__(self) -> None:
        kernel_choices("kernels", self.kernels, allow_mixed=True)
        check_number_tuple("se_ratios", self.se_ratios, low=0, high=1)
        check_str_tuple("activations", self.activations, ACTIVATIONS)
        check_number_tuple("filter_multipliers", self.filter_multipliers, low=0, high=8, low_open=True)
        check_number_tuple("layer_deltas", self.layer_deltas, low=-8, high=8, integer=True)
        check_number_tuple("expand_multipliers", self.expand_multipliers, low=0, high=8, low_open=True)


@dataclass(frozen=True)
class _Slot:
    repeats: int
    max_repeats: int
    stride: int
    skip: str
    filter_widths: dict[float, int]
    expand_widths: tuple[dict[float, int], ...]  # one table per possible layer
    reference_choices: dict[str, Any]


def _centre_choice(decision: Decision, wanted: Any) -> Any:
    try:
        return decision.choices[decision.index(wanted)]
    except ValueError:
        return decision.choices[len(decision.choices) // 2]


class MobileNetV3Space(FactorizedSpace):
    """Per-block filters, depth, kernel, SE and activation, and per-layer expansion widths."""

    def __init__(self, name: str = "mobilenet_v3", **options: Any) -> None:
        settings: MobileNetV3Options = self._configure(name, MobileNetV3Options, options)
        reference = configured_reference(settings)
        self.reference = reference
        self._kernels = kernel_choices("kernels", settings.kernels, allow_mixed=True)
        kernel_of = {kernel: choice for choice, kernel in self._kernels.items()}
        self._slots: list[_Slot] = []
        decisions: list[Decision] = []
        for index, block in enumerate(reference.blocks):
            if block.kind != "mbconv" or block.expand_groups != 1 or block.project_groups != 1:
                raise SpaceOptionError("reference", settings.reference,
                                       f"block {index} is not a plain mbconv block; this space needs one")
            assert block.expand is not None
            max_repeats = max(1, block.repeats + max(settings.layer_deltas))
            references = [block.expand[min(j, block.repeats - 1)] for j in range(max_repeats)]
            se_ratio = 0.0
            if block.se is not None and all(getattr(block.se, key) == value for key, value in SE_CONVENTION.items()):
                se_ratio = block.se.ratio
            self._slots.append(_Slot(
                repeats=block.repeats, max_repeats=max_repeats, stride=block.stride, skip=block.skip,
                filter_widths=relative_widths(block.out, settings.filter_multipliers),
                expand_widths=tuple(relative_widths(width, settings.expand_multipliers) for width in references),
                reference_choices={"filters": 1.0, "layers": 0, "kernel": kernel_of.get(block.kernel),
                                   "se": se_ratio, "act": block.act}))
            decisions += [
                Decision(f"b{index}_filters", tuple(float(m) for m in settings.filter_multipliers)),
                Decision(f"b{index}_layers", tuple(settings.layer_deltas)),
                Decision(f"b{index}_kernel", tuple(self._kernels)),
                Decision(f"b{index}_se", tuple(float(r) for r in settings.se_ratios)),
                Decision(f"b{index}_act", tuple(settings.activations)),
            ]
            decisions += [Decision(f"b{index}_l{j}_expand", tuple(float(m) for m in settings.expand_multipliers))
                          for j in range(max_repeats)]
        self._decisions = tuple(decisions)

    def decode(self, decisions: Mapping[str, Any]) -> ArchSpec:
        point = self.validate(decisions)
        blocks = []
        for index, slot in enumerate(self._slots):
            repeats = max(1, slot.repeats + point[f"b{index}_layers"])
            ratio = point[f"b{index}_se"]
            se = None if ratio == 0 else SESpec(ratio=float(ratio), **SE_CONVENTION)
            blocks.append(BlockSpec(
                kind="mbconv", out=slot.filter_widths[point[f"b{index}_filters"]],
                kernel=self._kernels[point[f"b{index}_kernel"]], stride=slot.stride, repeats=repeats,
                expand=tuple(slot.expand_widths[j][point[f"b{index}_l{j}_expand"]] for j in range(repeats)),
                se=se, act=point[f"b{index}_act"], skip=slot.skip))
        return self._named(self.reference, blocks)

    def encode(self, spec: ArchSpec) -> dict[str, Any]:
        self._check_block_count(spec, len(self._slots))
        point: dict[str, Any] = {}
        kernel_of = {kernel: choice for choice, kernel in self._kernels.items()}
        for index, (block, slot) in enumerate(zip(spec.blocks, self._slots)):
            where = f"blocks[{index}]"
            name = f"b{index}"
            point[f"{name}_filters"] = float(self._lookup(f"{where}.out", f"{name}_filters", block.out,
                                                          inverse_lookup(slot.filter_widths, 1.0)))
            counts = inverse_lookup({delta: max(1, slot.repeats + delta) for delta in self.settings.layer_deltas}, 0)
            point[f"{name}_layers"] = self._lookup(f"{where}.repeats", f"{name}_layers", block.repeats, counts)
            point[f"{name}_kernel"] = self._lookup(f"{where}.kernel", f"{name}_kernel", block.kernel, kernel_of)
            ratio = 0.0 if block.se is None else block.se.ratio
            point[f"{name}_se"] = self._lookup(f"{where}.se", f"{name}_se", ratio,
                                               {float(r): float(r) for r in self.settings.se_ratios})
            point[f"{name}_act"] = self._lookup(f"{where}.act", f"{name}_act", block.act,
                                                {act: act for act in self.settings.activations})
            if block.kind != "mbconv" or block.expand is None:
                raise NotInSpaceError(self._name, f"{where}.kind", block.kind, "every block of this space is mbconv")
            for j in range(slot.max_repeats):
                decision = f"{name}_l{j}_expand"
                if j < len(block.expand):
                    point[decision] = float(self._lookup(f"{where}.expand[{j}]", decision, block.expand[j],
                                                         inverse_lookup(slot.expand_widths[j], 1.0)))
                else:
                    point[decision] = _centre_choice(self.decision(decision), 1.0)
        check_round_trip(self._name, spec, self.decode(point))
        return self.validate(point)

    def center(self) -> dict[str, Any]:
        """Every multiplier 1.0 and the reference's kernel, SE and activation (where the space
        lacks the reference's choice, the decision's middle choice)."""
        point = {}
        for index, slot in enumerate(self._slots):
            for kind, wanted in slot.reference_choices.items():
                decision = self.decision(f"b{index}_{kind}")
                point[decision.name] = _centre_choice(decision, wanted)
            for j in range(slot.max_repeats):
                decision = self.decision(f"b{index}_l{j}_expand")
                point[decision.name] = _centre_choice(decision, 1.0)
        return self.validate(point)


__all__ = ["MobileNetV3Space", "MobileNetV3Options"]
