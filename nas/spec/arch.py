"""Architecture specs: a whole network as frozen, validated data.

An :class:`ArchSpec` is a stem, a tuple of blocks and a head (:mod:`nas.spec.parts`). Every block
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

from nas.spec.blockstrings import decode_blocks, encode_blocks
from nas.spec.checks import check_choice, check_int, check_number, check_text
from nas.spec.errors import SpecError
from nas.spec.parts import FAMILIES, PADDINGS, BlockSpec, HeadSpec, SESpec, StemSpec
from nas.spec.scaling import scale_parts
from nas.spec.yamlio import YamlInputError, dump_yaml, load_yaml_text, read_yaml_file


def _read_yaml(what: str, source: str | Path) -> Any:
    """A spec's YAML data from a file (``Path``) or text, as a :class:`SpecError` on bad input."""
    try:
        if isinstance(source, Path):
            return read_yaml_file(source, what)
        return load_yaml_text(source, "<yaml>")
    except YamlInputError as error:
        where = str(source) if isinstance(source, Path) else "<yaml>"
        reason = str(error)[len(where) + 2:] if str(error).startswith(f"{where}: ") else str(error)
        raise SpecError("yaml", where, reason) from None


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
        check_choice("family", self.family, FAMILIES, error=SpecError)
        check_int("resolution", self.resolution, 8, 4096, error=SpecError)
        check_int("num_classes", self.num_classes, 1, 100000, error=SpecError)
        check_int("in_channels", self.in_channels, 1, 64, error=SpecError)
        check_number("dropout", self.dropout, 0.0, 0.95, error=SpecError)
        check_number("bn_momentum", self.bn_momentum, 0.0, 1.0, low_open=True, error=SpecError)
        check_number("bn_eps", self.bn_eps, 0.0, 1.0, low_open=True, error=SpecError)
        check_choice("padding", self.padding, PADDINGS, error=SpecError)
        check_text("name", self.name, error=SpecError)
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
        return dump_yaml(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

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
            source = str(path)
            data = _read_yaml("spec file", path)
        else:
            data = _read_yaml("spec", str(text_or_path))
        if not isinstance(data, Mapping):
            raise SpecError("yaml", source, "the document must be a mapping of spec fields")
        return spec_from_dict(data)

    # ----- block strings ----------------------------------------------------------------------

    @classmethod
    def from_block_strings(cls, strings: Iterable[str], stem_channels: int = 32,
                           head_channels: int = 1280, **options: Any) -> "ArchSpec":
        """Decode TF MnasNet / MixNet block strings; ``options`` set the other spec fields."""
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
        chosen = dialect or ("mixnet" if self.family == "mixnet" else "mnasnet")
        return encode_blocks(self.blocks, self.stem.channels, dialect=chosen)

    # ----- scaling ----------------------------------------------------------------------------

    def scaled(self, width: float = 1.0, divisor: int = 8) -> "ArchSpec":
        """Scale every width by ``width`` with the rounding rules of this spec's family
        (:mod:`nas.spec.scaling`); the name gets a ``_x<width>`` suffix."""
        check_number("width", width, 0.05, 8.0, error=SpecError)
        if width == 1.0:
            return self
        stem, blocks, head = scale_parts(self.stem, self.blocks, self.head, self.family, width, divisor)
        return dataclasses.replace(self, stem=stem, blocks=blocks, head=head, name=f"{self.name}_x{width:g}")


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


_T = TypeVar("_T")


def _build(cls: type[_T], data: dict[str, Any], path: str) -> _T:
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
