"""Architecture specs: frozen, validated dataclasses that describe a MobileNet-style network.

An :class:`ArchSpec` is pure data. It is a stem, a list of blocks and a head. Every block
repeats one searched layer ``repeats`` times; only the first layer strides. Expansion widths
are absolute (one per layer), so NetAdapt-pruned and MobileNetV3-style widths are exact.

Nothing here imports MindSpore. Specs round-trip losslessly through YAML
(:meth:`ArchSpec.from_yaml` / :meth:`ArchSpec.to_yaml`) and through block strings
(:meth:`ArchSpec.from_block_strings` / :meth:`ArchSpec.to_block_strings`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

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


class SpecError(ValueError):
    """A spec value is invalid. ``path`` names the field, e.g. ``blocks[3].kernel``."""

    def __init__(self, path: str, value: Any, reason: str) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        super().__init__(f"{path}: {reason} (got {value!r})")

    def under(self, prefix: str) -> "SpecError":
        """The same error, with its path placed under ``prefix``."""
        joined = f"{prefix}.{self.path}" if not self.path.startswith("[") else f"{prefix}{self.path}"
        return SpecError(joined, self.value, self.reason)


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


def _check_int(path: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, value, "must be an integer")
    if not low <= value <= high:
        raise SpecError(path, value, f"must be in [{low}, {high}]")


def _check_choice(path: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise SpecError(path, value, f"must be one of {list(choices)}")


def _check_float(path: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(path, value, "must be a finite number")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise SpecError(path, value, f"must be in {bracket}{low}, {high}]")


def _check_kernel(path: str, value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise SpecError(path, value, "must be a non-empty tuple of odd kernel sizes")
    for size in value:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size > 15 or size % 2 == 0:
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
        _check_float("ratio", self.ratio, 0.0, 1.0, low_open=True)
        _check_choice("base", self.base, SE_BASES)
        _check_choice("gate", self.gate, GATES)
        _check_int("divisor", self.divisor, 1, 64)
        _check_choice("act", self.act, ACTIVATIONS)

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
        _check_int("channels", self.channels, 1, MAX_CHANNELS)
        _check_kernel("kernel", (self.kernel,))
        _check_int("stride", self.stride, 1, 2)
        _check_choice("act", self.act, ACTIVATIONS)
        _check_choice("padding", self.padding, PADDINGS)


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
        _check_choice("kind", self.kind, BLOCK_KINDS)
        _check_int("out", self.out, 1, MAX_CHANNELS)
        _check_kernel("kernel", self.kernel)
        _check_int("stride", self.stride, 1, 2)
        _check_int("repeats", self.repeats, 1, MAX_REPEATS)
        if self.kind == "mbconv":
            if not isinstance(self.expand, tuple) or len(self.expand) != self.repeats:
                raise SpecError("expand", self.expand,
                                f"an mbconv block needs one expansion width per layer ({self.repeats})")
            for width in self.expand:
                _check_int("expand", width, 1, MAX_CHANNELS)
        elif self.expand is not None:
            raise SpecError("expand", self.expand, f"a {self.kind} block has no expansion width")
        if self.se is not None and not isinstance(self.se, SESpec):
            raise SpecError("se", self.se, "must be an SESpec or None")
        _check_choice("act", self.act, ACTIVATIONS)
        _check_choice("skip", self.skip, SKIPS)
        _check_int("expand_groups", self.expand_groups, 1, 16)
        _check_int("project_groups", self.project_groups, 1, 16)
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
        _check_choice("kind", self.kind, HEAD_KINDS)
        _check_int("channels", self.channels, 1, MAX_CHANNELS)
        _check_choice("act", self.act, ACTIVATIONS)
        if self.kind == "mobilenet_v3":
            _check_int("hidden", self.hidden, 1, MAX_CHANNELS)
        elif self.hidden is not None:
            raise SpecError("hidden", self.hidden, "only a mobilenet_v3 head has a hidden layer")


@dataclass(frozen=True)
class ArchSpec:
    """A whole network. ``name`` is a label: it does not take part in equality or ``arch_id``."""

    stem: StemSpec
    blocks: tuple[BlockSpec, ...]
    head: HeadSpec
    family: str = "mnasnet"
    resolution: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    dropout: float = 0.2
    bn_momentum: float = 0.99
    bn_eps: float = 1e-3
    padding: str = "symmetric"
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.stem, StemSpec):
            raise SpecError("stem", self.stem, "must be a StemSpec")
        if not isinstance(self.head, HeadSpec):
            raise SpecError("head", self.head, "must be a HeadSpec")
        if not isinstance(self.blocks, tuple) or not self.blocks:
            raise SpecError("blocks", self.blocks, "must be a non-empty tuple of BlockSpec")
        _check_choice("family", self.family, FAMILIES)
        _check_int("resolution", self.resolution, 8, 4096)
        _check_int("num_classes", self.num_classes, 1, 100000)
        _check_int("in_channels", self.in_channels, 1, 64)
        _check_float("dropout", self.dropout, 0.0, 0.95)
        _check_float("bn_momentum", self.bn_momentum, 0.0, 1.0, low_open=True)
        _check_float("bn_eps", self.bn_eps, 0.0, 1.0, low_open=True)
        _check_choice("padding", self.padding, PADDINGS)
        if not isinstance(self.name, str) or not self.name:
            raise SpecError("name", self.name, "must be a non-empty string")
        channels = self.stem.channels
        for index, block in enumerate(self.blocks):
            if not isinstance(block, BlockSpec):
                raise SpecError(f"blocks[{index}]", block, "must be a BlockSpec")
            try:
                _check_block_in_context(block, channels)
            except SpecError as error:
                raise error.under(f"blocks[{index}]") from None
            channels = block.out

    # ----- identity -------------------------------------------------------------------------

    @property
    def arch_id(self) -> str:
        """A short stable hash of the network this spec builds (the name is ignored)."""
        canonical = json.dumps(_network_canonical(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> "ArchSpec":
        """A copy with some top-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_block(self, index: int, **changes: Any) -> "ArchSpec":
        """A copy with block ``index`` changed."""
        blocks = list(self.blocks)
        try:
            blocks[index] = dataclasses.replace(blocks[index], **changes)
        except SpecError as error:
            raise error.under(f"blocks[{index}]") from None
        return dataclasses.replace(self, blocks=tuple(blocks))

    def block_inputs(self) -> tuple[int, ...]:
        """The input width of every block."""
        widths = [self.stem.channels]
        for block in self.blocks[:-1]:
            widths.append(block.out)
        return tuple(widths)

    def with_group_width(self, producers: Iterable[int], width: int) -> "ArchSpec":
        """This spec with every producer of a residual group at ``width`` (0 = the stem, ``i`` =
        block ``i - 1``). Layers that read the group without an expansion conv (expansion equal to
        their input) keep it that way. Raises :class:`SpecError` when the result is invalid."""
        producers = tuple(producers)
        old_inputs = self.block_inputs()
        stem = self.stem
        blocks = list(self.blocks)
        for producer in producers:
            if producer == 0:
                stem = dataclasses.replace(stem, channels=width)
            else:
                blocks[producer - 1] = dataclasses.replace(blocks[producer - 1], out=width)
        for index, block in enumerate(self.blocks):
            if block.expand is None:
                continue
            expand = list(block.expand)
            for layer in range(block.repeats):
                reads = index if layer == 0 else index + 1
                layer_in = old_inputs[index] if layer == 0 else block.out
                if reads in producers and expand[layer] == layer_in:
                    expand[layer] = width
            blocks[index] = dataclasses.replace(blocks[index], expand=tuple(expand))
        return dataclasses.replace(self, stem=stem, blocks=tuple(blocks))

    # ----- YAML -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain, canonical data (every field written), suitable for YAML or JSON."""
        return spec_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArchSpec":
        """Build from plain data; unknown keys and bad values raise :class:`SpecError`."""
        return spec_from_dict(data)

    def to_yaml(self) -> str:
        """Canonical YAML text; ``ArchSpec.from_yaml(spec.to_yaml()) == spec``."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> "ArchSpec":
        """Read a spec from YAML text or from a ``.yaml`` file path."""
        source = "<yaml>"
        if isinstance(text_or_path, Path) or (
            isinstance(text_or_path, str) and "\n" not in text_or_path
            and text_or_path.endswith((".yaml", ".yml"))
        ):
            path = Path(text_or_path)
            if not path.is_file():
                raise SpecError("file", str(path), "spec file not found")
            text, source = path.read_text(), str(path)
        else:
            text = str(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise SpecError("yaml", source, f"malformed YAML{where}") from None
        if not isinstance(data, Mapping):
            raise SpecError("yaml", source, "the document must be a mapping of spec fields")
        return spec_from_dict(data)

    # ----- block strings ----------------------------------------------------------------------

    @classmethod
    def from_block_strings(cls, strings: Iterable[str], stem_channels: int = 32,
                           head_channels: int = 1280, **options: Any) -> "ArchSpec":
        """Decode TF MnasNet / MixNet block strings; ``options`` set the other spec fields."""
        from nas.blockstrings import decode_blocks

        strings = list(strings)
        known = {f.name for f in dataclasses.fields(cls)} | {"stem_act", "stem_kernel", "stem_stride",
                                                             "head_kind", "head_act", "head_hidden"}
        unknown = sorted(set(options) - known - {"stem", "blocks", "head"})
        if unknown or {"stem", "blocks", "head"} & set(options):
            bad = unknown or sorted({"stem", "blocks", "head"} & set(options))
            raise SpecError("options", bad[0], f"unknown option; known: {sorted(known)}")
        stem = StemSpec(channels=stem_channels, kernel=options.pop("stem_kernel", 3),
                        stride=options.pop("stem_stride", 2), act=options.pop("stem_act", "relu"))
        head = HeadSpec(kind=options.pop("head_kind", "mnasnet"), channels=head_channels,
                        act=options.pop("head_act", "relu"), hidden=options.pop("head_hidden", None))
        blocks = decode_blocks(strings, stem_channels)
        return cls(stem=stem, blocks=blocks, head=head, **options)

    def block_string_options(self) -> dict[str, Any]:
        """The keyword arguments that, with :meth:`to_block_strings`, rebuild this spec exactly."""
        options: dict[str, Any] = {
            "stem_channels": self.stem.channels, "head_channels": self.head.channels,
            "stem_kernel": self.stem.kernel, "stem_stride": self.stem.stride, "stem_act": self.stem.act,
            "head_kind": self.head.kind, "head_act": self.head.act, "head_hidden": self.head.hidden,
        }
        for name in ("family", "resolution", "num_classes", "in_channels", "dropout", "bn_momentum",
                     "bn_eps", "padding", "name"):
            options[name] = getattr(self, name)
        if self.stem.padding != "symmetric":
            raise SpecError("stem.padding", self.stem.padding, "block strings carry only a symmetric stem")
        return options

    def to_block_strings(self, dialect: str | None = None) -> list[str]:
        """Encode the blocks; ``dialect`` is ``mnasnet`` or ``mixnet`` (default: by family)."""
        from nas.blockstrings import encode_blocks

        chosen = dialect or ("mixnet" if self.family == "mixnet" else "mnasnet")
        return encode_blocks(self.blocks, self.stem.channels, dialect=chosen)

    # ----- scaling ----------------------------------------------------------------------------

    def scaled(self, width: float = 1.0, divisor: int = 8) -> "ArchSpec":
        """Scale every width by ``width`` with the rounding rules of this spec's family."""
        from nas.scaling import scale_spec

        return scale_spec(self, width, divisor)


def _check_block_in_context(block: BlockSpec, in_channels: int) -> None:
    """Checks that need the block's input width."""
    for index in range(block.repeats):
        layer_in = in_channels if index == 0 else block.out
        mid = _mid_channels(block, index, layer_in)
        if len(block.kernel) > mid:
            raise SpecError("kernel", block.kernel, f"{len(block.kernel)} kernel groups exceed {mid} channels")
        if block.kind == "mbconv" and mid != layer_in and block.expand_groups > min(layer_in, mid):
            raise SpecError("expand_groups", block.expand_groups, "more groups than channels")
        if block.project_groups > min(mid, block.out):
            raise SpecError("project_groups", block.project_groups, "more groups than channels")


def _mid_channels(block: BlockSpec, index: int, layer_in: int) -> int:
    if block.kind == "mbconv":
        assert block.expand is not None
        return block.expand[index]
    if block.kind == "dwsep":
        return layer_in
    return block.out


# ----- plain data <-> dataclasses -------------------------------------------------------------

def _se_to_dict(se: SESpec | None) -> dict[str, Any] | None:
    return None if se is None else dataclasses.asdict(se)


def _block_to_dict(block: BlockSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": block.kind, "repeats": block.repeats,
                            "kernel": block.kernel[0] if len(block.kernel) == 1 else list(block.kernel),
                            "stride": block.stride}
    if block.expand is not None:
        data["expand"] = list(block.expand)
    data.update(out=block.out, se=_se_to_dict(block.se), act=block.act, skip=block.skip,
                expand_groups=block.expand_groups, project_groups=block.project_groups)
    return data


def spec_to_dict(spec: ArchSpec) -> dict[str, Any]:
    """Canonical plain data for ``spec``."""
    head = {"kind": spec.head.kind, "channels": spec.head.channels, "act": spec.head.act}
    if spec.head.hidden is not None:
        head["hidden"] = spec.head.hidden
    return {
        "name": spec.name, "family": spec.family, "resolution": spec.resolution,
        "num_classes": spec.num_classes, "in_channels": spec.in_channels, "dropout": spec.dropout,
        "bn_momentum": spec.bn_momentum, "bn_eps": spec.bn_eps, "padding": spec.padding,
        "stem": dataclasses.asdict(spec.stem),
        "blocks": [_block_to_dict(block) for block in spec.blocks],
        "head": head,
    }


def _network_canonical(spec: ArchSpec) -> dict[str, Any]:
    """Plain data in which equal networks are equal: dwsep == mbconv with no expansion, and a
    residual that can never apply is written as ``none``."""
    data = spec_to_dict(spec)
    data.pop("name")
    channels = spec.stem.channels
    for block, block_data in zip(spec.blocks, data["blocks"]):
        if block.kind == "dwsep":
            ins = [channels] + [block.out] * (block.repeats - 1)
            block_data.update(kind="mbconv", expand=ins)
        if block.skip == "identity" and not any(
                block.layer_stride(i) == 1 and (channels if i == 0 else block.out) == block.out
                for i in range(block.repeats)):
            block_data["skip"] = "none"
        channels = block.out
    return data


def _take(data: Mapping[str, Any], allowed: Iterable[str], path: str) -> dict[str, Any]:
    """Copy ``data`` after rejecting keys not in ``allowed``, naming the first unknown one."""
    if not isinstance(data, Mapping):
        raise SpecError(path or "spec", data, "must be a mapping")
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise SpecError(where, key, f"unknown key; allowed: {sorted(allowed)}")
    return dict(data)


def _as_kernel(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    return value


def _build(cls: type, data: dict[str, Any], path: str) -> Any:
    try:
        return cls(**data)
    except SpecError as error:
        raise error.under(path) if path else error from None
    except TypeError as error:  # a required field is missing
        raise SpecError(path or "spec", sorted(data), f"missing field: {error}") from None


def _se_from_dict(data: Any, path: str) -> SESpec | None:
    if data is None:
        return None
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return _build(SESpec, {"ratio": data}, path)
    fields = _take(data, [f.name for f in dataclasses.fields(SESpec)], path)
    return _build(SESpec, fields, path)


def _block_from_dict(data: Any, path: str) -> BlockSpec:
    fields = _take(data, [f.name for f in dataclasses.fields(BlockSpec)], path)
    if "kernel" in fields:
        fields["kernel"] = _as_kernel(fields["kernel"])
    if "expand" in fields:
        expand = fields["expand"]
        if isinstance(expand, list):
            fields["expand"] = tuple(expand)
        elif isinstance(expand, int) and not isinstance(expand, bool):
            fields["expand"] = (expand,) * int(fields.get("repeats", 1) or 1)
    if "se" in fields:
        fields["se"] = _se_from_dict(fields["se"], f"{path}.se")
    return _build(BlockSpec, fields, path)


def spec_from_dict(data: Mapping[str, Any]) -> ArchSpec:
    """Build an :class:`ArchSpec` from plain data, strictly."""
    top = _take(data, [f.name for f in dataclasses.fields(ArchSpec)], "")
    for required in ("stem", "blocks", "head"):
        if required not in top:
            raise SpecError(required, None, "missing required field")
    top["stem"] = _build(StemSpec, _take(top["stem"], [f.name for f in dataclasses.fields(StemSpec)],
                                         "stem"), "stem")
    top["head"] = _build(HeadSpec, _take(top["head"], [f.name for f in dataclasses.fields(HeadSpec)],
                                         "head"), "head")
    blocks = top["blocks"]
    if not isinstance(blocks, list) or not blocks:
        raise SpecError("blocks", blocks, "must be a non-empty list of blocks")
    top["blocks"] = tuple(_block_from_dict(block, f"blocks[{i}]") for i, block in enumerate(blocks))
    return _build(ArchSpec, top, "")
