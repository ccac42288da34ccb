"""Measurable pieces of a network: the stem, each layer, the head (and the launch overhead).

A look-up table stores one latency per piece key. The key is canonical: two layers with the
same key build the same computation at the same input size. ``base`` is the key without the
channel counts; pieces that share a base differ only in widths, which is what the table
interpolates over (``coords`` = in, mid, out channels; ``se`` = squeeze width).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Iterable

from nas.spec.arch import ArchSpec
from nas.spec.layers import LayerPlan, plan_layers

PIECE_KINDS = ("stem", "layer", "head", "overhead")


@dataclass(frozen=True)
class Piece:
    """One measurable piece. ``config`` is the JSON the worker builds it from."""

    kind: str
    key: str
    base: str
    coords: tuple[int, int, int]
    se: int
    input_shape: tuple[int, int, int]
    config: str
    name: str = dataclasses.field(default="", compare=False)

    def describe(self) -> str:
        return f"{self.name or self.kind} [{self.key}]"


def _layer_piece(plan: LayerPlan, spec: ArchSpec, with_config: bool = True) -> Piece:
    kernel = ".".join(str(k) for k in plan.kernel)
    se = f"se1{plan.se_gate[0]}{plan.se_act}" if plan.se_channels else "se0"
    expand = "x1" if plan.has_expand else "x0"
    base = (f"layer|{plan.kind}|{expand}|k{kernel}|s{plan.stride}|{se}|{plan.act}|{plan.skip}"
            f"|g{plan.expand_groups}.{plan.project_groups}|h{plan.input_size}|p{spec.padding}")
    config = ""
    if with_config:
        config = json.dumps({"plan": dataclasses.asdict(plan), "padding": spec.padding,
                             "bn_momentum": spec.bn_momentum, "bn_eps": spec.bn_eps}, sort_keys=True)
    return Piece(kind="layer", key=f"{plan.signature()}|p{spec.padding}", base=base,
                 coords=(plan.in_channels, plan.mid_channels, plan.out_channels), se=plan.se_channels,
                 input_shape=(plan.in_channels, plan.input_size, plan.input_size), config=config, name=plan.name)


def _stem_piece(spec: ArchSpec, resolution: int) -> Piece:
    stem = spec.stem
    base = f"stem|c{spec.in_channels}|k{stem.kernel}|s{stem.stride}|{stem.act}|p{stem.padding}|h{resolution}"
    key = (f"stem|c{spec.in_channels}|o{stem.channels}|k{stem.kernel}|s{stem.stride}|{stem.act}|p{stem.padding}"
           f"|h{resolution}")
    config = {"in_channels": spec.in_channels, "stem": dataclasses.asdict(stem), "bn_momentum": spec.bn_momentum,
              "bn_eps": spec.bn_eps}
    return Piece(kind="stem", key=key, base=base, coords=(spec.in_channels, stem.channels, stem.channels), se=0,
                 input_shape=(spec.in_channels, resolution, resolution), config=json.dumps(config, sort_keys=True),
                 name="stem")


def _head_piece(spec: ArchSpec, in_channels: int, size: int) -> Piece:
    head = spec.head
    hidden = head.hidden or 0
    base = f"head|{head.kind}|hd{int(hidden > 0)}|{head.act}|n{spec.num_classes}|h{size}"
    key = f"head|{head.kind}|i{in_channels}|c{head.channels}|hd{hidden}|{head.act}|n{spec.num_classes}|h{size}"
    config = {"in_channels": in_channels, "head": dataclasses.asdict(head), "num_classes": spec.num_classes,
              "bn_momentum": spec.bn_momentum, "bn_eps": spec.bn_eps}
    return Piece(kind="head", key=key, base=base, coords=(in_channels, head.channels, hidden), se=0,
                 input_shape=(in_channels, size, size), config=json.dumps(config, sort_keys=True), name="head")


def overhead_piece() -> Piece:
    """A one-op graph: what launching any compiled graph costs. Every piece measured on its own
    pays it once; a whole network pays it once in all."""
    return Piece(kind="overhead", key="overhead", base="overhead", coords=(0, 0, 0), se=0, input_shape=(8, 1, 1),
                 config="{}", name="launch overhead")


def spec_pieces(spec: ArchSpec, resolution: int | None = None, *, with_config: bool = True) -> list[Piece]:
    """The stem, every layer and the head of ``spec`` at ``resolution`` (default: the spec's).

    ``with_config=False`` skips the worker configs of the layers (faster; enough for look-ups).
    """
    size = resolution or spec.resolution
    plans = plan_layers(spec, size)
    pieces = [_stem_piece(spec, size)]
    pieces.extend(_layer_piece(plan, spec, with_config) for plan in plans)
    pieces.append(_head_piece(spec, plans[-1].out_channels, plans[-1].output_size))
    return pieces


def unique_pieces(specs: Iterable[ArchSpec], resolution: int | None = None) -> list[Piece]:
    """The distinct pieces of ``specs``, in first-seen order."""
    seen: dict[str, Piece] = {}
    for spec in specs:
        for piece in spec_pieces(spec, resolution):
            seen.setdefault(piece.key, piece)
    return list(seen.values())
