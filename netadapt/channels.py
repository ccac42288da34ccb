"""Which channels of a network are tied together, and how convolutions split them.

NetAdapt shrinks *channel sets*. A channel set is a run of channels that must be pruned as one:

- a **residual group** (``("group", p)``): the outputs of the producers ``p, p+1, ...`` (producer 0
  is the stem, producer ``k + 1`` is block ``k``) that identity residuals add together. Every layer
  of a block writes the block's ``out`` channels, so a block is always one producer; block ``k``
  joins the group of the producer before it exactly when its *first* layer has an effective
  identity residual (stride 1 and equal widths, see :func:`nas.spec.layers.plan_layers`). Consecutive
  blocks are otherwise independent. A pooling skip that pads or truncates between different
  widths ties channel *positions* across producers of different widths: both are frozen.
- an **expansion** (``("mid", b, l)``): the expanded channels of layer ``l`` of block ``b``, only
  where the layer has an expansion conv. Without one (an mbconv whose expansion equals its input,
  a dwsep or a regular conv block) the depthwise channels *are* the input (or output) channels,
  so they follow their producer.
- a **squeeze width** (``("se", b, l)``), derived from the spec's :class:`~nas.spec.parts.SESpec`.
- the head conv (``("head",)``) and the mobilenet_v3 head's hidden layer (``("hidden",)``).

Convs split into groups (MixConv kernels, MixNet's grouped 1x1 convs) split a channel set with
:func:`nas.spec.parts.split_channels`; :attr:`ChannelLayout.partitions` lists, for every set, the group
counts of every conv that splits it, so that surgery can keep each split consistent.

Pure Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from nas.spec.arch import ArchSpec
from nas.spec.layers import LayerPlan, plan_layers

Key = tuple[Union[str, int], ...]
HEAD: Key = ("head",)
HIDDEN: Key = ("hidden",)


def producer_name(producer: int) -> str:
    """``stem`` for producer 0, ``b<k>`` for block ``k``."""
    return "stem" if producer == 0 else f"b{producer - 1}"


def producer_width(spec: ArchSpec, producer: int) -> int:
    """The output width of a producer (0 = stem, k + 1 = block k)."""
    return spec.stem.channels if producer == 0 else spec.blocks[producer - 1].out


@dataclass(frozen=True)
class WidthGroup:
    """Producers whose outputs are added by residuals, so they keep one width and one channel order."""

    producers: tuple[int, ...]
    frozen: str | None = None  # why it cannot be shrunk, if it cannot

    @property
    def key(self) -> Key:
        return ("group", self.producers[0])

    @property
    def name(self) -> str:
        return "+".join(producer_name(p) for p in self.producers)


def residual_groups(spec: ArchSpec, plans: list[LayerPlan] | None = None) -> list[WidthGroup]:
    """The residual groups of ``spec`` in network order (see the module docstring)."""
    plans = plan_layers(spec) if plans is None else plans
    count = len(spec.blocks) + 1
    parent = list(range(count))
    frozen: dict[int, str] = {}

    def root(item: int) -> int:
        while parent[item] != item:
            item = parent[item]
        return item

    for plan in plans:
        if plan.index != 0:
            continue  # later layers read and write the same producer
        before, after = plan.block, plan.block + 1
        if plan.skip == "identity" or (plan.skip == "pool" and plan.in_channels == plan.out_channels):
            parent[root(after)] = root(before)
        elif plan.skip == "pool":
            reason = (f"the pooling skip of block {plan.block} pads or truncates {plan.in_channels} channels "
                      f"to {plan.out_channels}, tying channel positions across widths")
            frozen.setdefault(before, reason)
            frozen.setdefault(after, reason)
    members: dict[int, list[int]] = {}
    for producer in range(count):
        members.setdefault(root(producer), []).append(producer)
    groups = []
    for producers in sorted(members.values()):
        reasons = [frozen[p] for p in producers if p in frozen]
        groups.append(WidthGroup(tuple(producers), reasons[0] if reasons else None))
    return groups


@dataclass(frozen=True)
class LayerSets:
    """The channel sets a layer reads, expands into, squeezes to and writes."""

    plan: LayerPlan
    input: Key
    mid: Key
    output: Key
    se: Key | None


class ChannelLayout:
    """Every channel set of a spec with its width, and the splits that the convs impose on it."""

    def __init__(self, spec: ArchSpec) -> None:
        self.spec = spec
        self.plans = plan_layers(spec)
        self.groups = residual_groups(spec, self.plans)
        self.group_of: dict[int, Key] = {p: group.key for group in self.groups for p in group.producers}
        self.widths: dict[Key, int] = {group.key: producer_width(spec, group.producers[0]) for group in self.groups}
        self.partitions: dict[Key, set[int]] = {group.key: {1} for group in self.groups}
        self.layers: list[LayerSets] = []
        for plan in self.plans:
            input_set = self.group_of[plan.block if plan.index == 0 else plan.block + 1]
            output_set = self.group_of[plan.block + 1]
            if plan.kind == "conv":
                mid_set = output_set
                self.partitions[input_set].add(1)
            elif plan.has_expand:
                mid_set = ("mid", plan.block, plan.index)
                self.widths[mid_set] = plan.mid_channels
                self.partitions[mid_set] = {plan.expand_groups}
                self.partitions[input_set].add(plan.expand_groups)
            else:
                mid_set = input_set
            if plan.kind != "conv":
                self.partitions[mid_set].update({len(plan.kernel), plan.project_groups})
            self.partitions[output_set].add(plan.project_groups if plan.kind != "conv" else 1)
            se_set: Key | None = None
            if plan.se_channels:
                se_set = ("se", plan.block, plan.index)
                self.widths[se_set] = plan.se_channels
                self.partitions[se_set] = {1}
            self.layers.append(LayerSets(plan, input_set, mid_set, output_set, se_set))
        self.head_input: Key = self.group_of[len(spec.blocks)]
        self.widths[HEAD] = spec.head.channels
        self.partitions[HEAD] = {1}
        if spec.head.hidden is not None:
            self.widths[HIDDEN] = spec.head.hidden
            self.partitions[HIDDEN] = {1}

    def group(self, key: Key) -> WidthGroup:
        for group in self.groups:
            if group.key == key:
                return group
        raise KeyError(f"no residual group {key!r}; known: {[g.key for g in self.groups]}")


def structure(spec: ArchSpec) -> tuple:
    """Everything about ``spec`` except its widths: two specs with equal structure differ only in
    channel counts, and weight surgery can turn the network of one into the other's."""
    plans = plan_layers(spec)
    layers = tuple((p.block, p.index, p.kind, p.kernel, p.stride, p.skip, p.has_expand, p.expand_groups,
                    p.project_groups, p.act, p.se_channels > 0, p.se_gate, p.se_act) for p in plans)
    head = spec.head
    return (spec.family, spec.in_channels, spec.num_classes, spec.padding, spec.bn_momentum, spec.bn_eps,
            spec.dropout, spec.stem.kernel, spec.stem.stride, spec.stem.act, spec.stem.padding, layers,
            head.kind, head.act, head.hidden is not None)


def structure_difference(old: ArchSpec, new: ArchSpec) -> str | None:
    """A sentence naming the first structural difference between two specs, or None."""
    a, b = structure(old), structure(new)
    if a == b:
        return None
    names = ("family", "in_channels", "num_classes", "padding", "bn_momentum", "bn_eps", "dropout",
             "stem.kernel", "stem.stride", "stem.act", "stem.padding", "layers", "head.kind", "head.act",
             "head.hidden")
    for name, left, right in zip(names, a, b):
        if left == right:
            continue
        if name != "layers":
            return f"{name} differs ({left!r} vs {right!r})"
        if len(left) != len(right):
            return f"the number of layers differs ({len(left)} vs {len(right)})"
        fields = ("block", "index", "kind", "kernel", "stride", "skip", "has_expand", "expand_groups",
                  "project_groups", "act", "has_se", "se_gate", "se_act")
        for one, two in zip(left, right):
            if one != two:
                field = next(f for f, x, y in zip(fields, one, two) if x != y)
                where = f"blocks.{one[0]}.{one[1]}"
                old, new = dict(zip(fields, one))[field], dict(zip(fields, two))[field]
                return f"{where}.{field} differs ({old!r} vs {new!r})"
    return "the structure differs"


def widths_text(spec: ArchSpec) -> str:
    """A compact description of every width: ``s16|b0:e16o16|b1:e72.88o24|...|h576.1024``."""
    parts = [f"s{spec.stem.channels}"]
    for index, block in enumerate(spec.blocks):
        expand = "e" + ".".join(str(w) for w in block.expand) if block.expand is not None else ""
        parts.append(f"b{index}:{expand}o{block.out}")
    head = f"h{spec.head.channels}" + (f".{spec.head.hidden}" if spec.head.hidden is not None else "")
    return "|".join(parts + [head])
