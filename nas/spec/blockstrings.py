"""The one strict block-string codec: decode and encode side by side.

Dialect: tensorflow/tpu MnasNet (``r3_k5_s22_e3_i24_o40_se0.25``, ``noskip``) with the MixNet
extensions (``k3.5.7`` mixed kernels, ``a1.1`` / ``p1.1`` grouped 1x1 convs, ``sw`` swish).
This project adds tokens so that every spec is expressible:

=============  ===========================================================================
``ds`` ``cn``  block kind dwsep / regular conv (default: mbconv)
``x96.144``    absolute expansion width per layer, where no single ratio ``e`` reproduces it
``hs`` ``re6`` hswish / relu6 activation (``sw`` swish; default relu)
``poolskip``   pooling skip (``noskip``: none; default identity)
``seexp``      SE width from the expansion width (default: block input width)
``sehsig``     hard-sigmoid SE gate (default sigmoid)
``sed8``       SE width rounded to a multiple of 8 (default: truncated integer)
``sesw`` ...   SE inner activation (``sehs``, ``sere6``, ``sesw``; default relu)
=============  ===========================================================================

Unknown or duplicated tokens, and an input width that does not follow on from the previous
block, are errors. An expansion ratio ``e`` sets layer ``l``'s width to ``round(in_l * e)``
(half up) where ``in_l`` is ``i`` for the first layer and ``o`` after it.
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable, Iterable

from nas.spec.errors import SpecError
from nas.spec.parts import BlockSpec, SESpec

ACT_CODES = {"relu": "re", "relu6": "re6", "hswish": "hs", "swish": "sw"}
CODE_ACTS = {code: act for act, code in ACT_CODES.items()}

_DECIMAL = r"(\d+(?:\.\d+)?)"
_DOTTED_INTS = r"(\d+(?:\.\d+)*)"


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _dotted(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _groups(text: str, token: str) -> int:
    parts = _dotted(text)
    if any(part != 1 for part in parts):
        raise SpecError("block string", token, "grouped 1x1 convs are written a1, a1.1, a1.1.1 ...")
    return len(parts)


# Each token kind: (field name, full-match pattern, converter of the match to a value).
_TOKENS: list[tuple[str, re.Pattern[str], Callable[[re.Match[str], str], object]]] = [
    ("kind", re.compile(r"ds|cn|ir"), lambda m, t: {"ds": "dwsep", "cn": "conv", "ir": "mbconv"}[t]),
    ("repeats", re.compile(r"r(\d+)"), lambda m, t: int(m.group(1))),
    ("kernel", re.compile(r"k" + _DOTTED_INTS), lambda m, t: _dotted(m.group(1))),
    ("expand_groups", re.compile(r"a" + _DOTTED_INTS), lambda m, t: _groups(m.group(1), t)),
    ("project_groups", re.compile(r"p" + _DOTTED_INTS), lambda m, t: _groups(m.group(1), t)),
    ("stride", re.compile(r"s(\d)(\d)?"), lambda m, t: _stride(m, t)),
    ("ratio", re.compile(r"e" + _DECIMAL), lambda m, t: Decimal(m.group(1))),
    ("widths", re.compile(r"x" + _DOTTED_INTS), lambda m, t: _dotted(m.group(1))),
    ("in", re.compile(r"i(\d+)"), lambda m, t: int(m.group(1))),
    ("out", re.compile(r"o(\d+)"), lambda m, t: int(m.group(1))),
    ("se_ratio", re.compile(r"se" + _DECIMAL), lambda m, t: float(m.group(1))),
    ("se_base", re.compile(r"seexp"), lambda m, t: "expand"),
    ("se_gate", re.compile(r"sehsig"), lambda m, t: "hsigmoid"),
    ("se_divisor", re.compile(r"sed(\d+)"), lambda m, t: int(m.group(1))),
    ("se_act", re.compile(r"se(re6|hs|sw)"), lambda m, t: CODE_ACTS[m.group(1)]),
    ("skip", re.compile(r"noskip|poolskip"), lambda m, t: "none" if t == "noskip" else "pool"),
    ("act", re.compile(r"sw|hs|re6"), lambda m, t: CODE_ACTS[t]),
]


def _stride(match: re.Match[str], token: str) -> int:
    first, second = match.group(1), match.group(2)
    if second is not None and second != first:
        raise SpecError("block string", token, "stride must be square, e.g. s11 or s22")
    return int(first)


def _tokenize(text: str) -> dict[str, Any]:
    """Split one block string into named fields; unknown and duplicated tokens are errors."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("block string", text, "must be a non-empty string")
    found: dict[str, Any] = {}
    for token in text.strip().split("_"):
        for name, pattern, convert in _TOKENS:
            match = pattern.fullmatch(token)
            if match:
                if name in found:
                    raise SpecError("block string", text, f"duplicate {name} token {token!r}")
                found[name] = convert(match, token)
                break
        else:
            raise SpecError("block string", text, f"unknown token {token!r}")
    return found


def decode_block(text: str, in_channels: int) -> BlockSpec:
    """Decode one block string whose input width must be ``in_channels``."""
    fields = _tokenize(text)
    for required in ("repeats", "kernel", "stride", "in", "out"):
        if required not in fields:
            raise SpecError("block string", text, f"missing {required} token")
    if fields["in"] != in_channels:
        raise SpecError("block string", text,
                        f"input width i{fields['in']} does not follow the previous width {in_channels}")
    kind = str(fields.get("kind", "mbconv"))
    repeats = int(fields["repeats"])
    out = int(fields["out"])
    expand: tuple[int, ...] | None = None
    if kind == "mbconv":
        expand = _expansion_widths(fields, text, in_channels, out, repeats)
    elif "ratio" in fields or "widths" in fields:
        raise SpecError("block string", text, f"a {kind} block takes no e/x expansion token")
    se = None
    se_options = {key[3:]: fields[key] for key in ("se_base", "se_gate", "se_divisor", "se_act") if key in fields}
    if "se_ratio" in fields:
        if fields["se_ratio"] == 0:
            if se_options:
                raise SpecError("block string", text, "SE options given with se0")
        else:
            try:
                se = SESpec(ratio=fields["se_ratio"], **se_options)
            except SpecError as error:
                raise SpecError("block string", text, f"se {error.path} {error.reason}") from None
    elif se_options:
        raise SpecError("block string", text, "SE options given without an se ratio")
    try:
        return BlockSpec(kind=kind, out=out, kernel=fields["kernel"], stride=fields["stride"],
                         repeats=repeats, expand=expand, se=se, act=str(fields.get("act", "relu")),
                         skip=str(fields.get("skip", "identity")),
                         expand_groups=int(fields.get("expand_groups", 1)),
                         project_groups=int(fields.get("project_groups", 1)))
    except SpecError as error:
        raise SpecError("block string", text, f"{error.path} {error.reason}") from None


def _expansion_widths(fields: dict[str, Any], text: str, in_channels: int, out: int,
                      repeats: int) -> tuple[int, ...]:
    if ("ratio" in fields) == ("widths" in fields):
        raise SpecError("block string", text, "an mbconv block needs exactly one of e<ratio> or x<widths>")
    if "widths" in fields:
        widths = tuple(fields["widths"])
        if len(widths) != repeats:
            raise SpecError("block string", text, f"x gives {len(widths)} widths for {repeats} layers")
        return widths
    ratio = fields["ratio"]
    assert isinstance(ratio, Decimal)
    if ratio <= 0:
        raise SpecError("block string", text, "expansion ratio must be positive")
    ins = [in_channels] + [out] * (repeats - 1)
    return tuple(_half_up(Decimal(width) * ratio) for width in ins)


def decode_blocks(strings: Iterable[str], stem_channels: int) -> tuple[BlockSpec, ...]:
    """Decode a list of block strings following a stem of ``stem_channels``."""
    blocks = []
    channels = stem_channels
    for index, text in enumerate(strings):
        try:
            block = decode_block(text, channels)
        except SpecError as error:
            raise SpecError(f"blocks[{index}]", text, error.reason) from None
        blocks.append(block)
        channels = block.out
    if not blocks:
        raise SpecError("blocks", [], "at least one block string is needed")
    return tuple(blocks)


# ----- encoding --------------------------------------------------------------------------------

def _ratio_token(widths: tuple[int, ...], ins: list[int]) -> str | None:
    """The shortest decimal ratio that reproduces every layer's width, or None."""
    for digits in range(0, 7):
        try:
            ratio = (Decimal(widths[0]) / Decimal(ins[0])).quantize(Decimal(1).scaleb(-digits),
                                                                  rounding=ROUND_HALF_UP)
        except InvalidOperation:
            return None
        if ratio <= 0:
            continue
        if all(_half_up(Decimal(i) * ratio) == w for i, w in zip(ins, widths)):
            text = format(ratio.normalize(), "f")
            return f"e{text}"
    return None


def _format_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def encode_block(block: BlockSpec, in_channels: int, dialect: str = "mnasnet") -> str:
    """Encode one block whose input width is ``in_channels``."""
    if dialect not in ("mnasnet", "mixnet"):
        raise SpecError("dialect", dialect, "must be 'mnasnet' or 'mixnet'")
    tokens: list[str] = []
    if block.kind != "mbconv":
        tokens.append({"dwsep": "ds", "conv": "cn"}[block.kind])
    tokens += [f"r{block.repeats}", "k" + ".".join(str(k) for k in block.kernel)]
    if dialect == "mixnet" or block.expand_groups > 1 or block.project_groups > 1:
        tokens += ["a" + ".".join(["1"] * block.expand_groups), "p" + ".".join(["1"] * block.project_groups)]
    tokens.append(f"s{block.stride}{block.stride}")
    if block.expand is not None:
        ins = [in_channels] + [block.out] * (block.repeats - 1)
        tokens.append(_ratio_token(block.expand, ins) or "x" + ".".join(str(w) for w in block.expand))
    tokens += [f"i{in_channels}", f"o{block.out}"]
    if block.se is not None:
        tokens.append(f"se{_format_number(block.se.ratio)}")
        if block.se.base != "in":
            tokens.append("seexp")
        if block.se.gate != "sigmoid":
            tokens.append("sehsig")
        if block.se.divisor != 1:
            tokens.append(f"sed{block.se.divisor}")
        if block.se.act != "relu":
            tokens.append("se" + ACT_CODES[block.se.act])
    if block.skip != "identity":
        tokens.append({"none": "noskip", "pool": "poolskip"}[block.skip])
    if block.act != "relu":
        tokens.append(ACT_CODES[block.act])
    return "_".join(tokens)


def encode_blocks(blocks: Iterable[BlockSpec], stem_channels: int, dialect: str = "mnasnet") -> list[str]:
    """Encode blocks that follow a stem of ``stem_channels``."""
    strings = []
    channels = stem_channels
    for block in blocks:
        strings.append(encode_block(block, channels, dialect))
        channels = block.out
    return strings
