"""Analytic parameter and multiply-add counts. Pure Python: no MindSpore import.

Conventions (they match a counter hooked on MindSpore's ``Conv2d`` and ``Dense``): a conv costs
``out_h * out_w * out_channels * in_channels / groups * k * k`` multiply-adds and a dense layer
``in * out``; biases, BN, activations, pooling and residual adds are not counted.
``params`` counts trainable parameters; ``params_with_bn_stats`` adds BN's moving mean and
variance, as MindCV reports model sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nas.spec.arch import ArchSpec
from nas.spec.layers import LayerPlan, output_size, plan_layers, stem_output_size
from nas.spec.parts import split_channels


@dataclass(frozen=True)
class LayerRow:
    """One row of the per-layer table (``params`` are trainable ones)."""

    name: str
    op: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    params: int
    bn_channels: int
    madds: int


@dataclass(frozen=True)
class Profile:
    """Totals and the per-layer table of a spec at one resolution."""

    resolution: int
    params: int
    params_with_bn_stats: int
    madds: int
    layers: tuple[LayerRow, ...] = field(repr=False)


@dataclass
class _Tally:
    weights: int = 0
    bn: int = 0
    madds: int = 0

    def conv(self, in_channels: int, out_channels: int, kernel: int, out_size: int, groups: int = 1,
             bias: bool = False, bn: bool = True) -> None:
        weights = out_channels * (in_channels // groups) * kernel * kernel
        self.weights += weights + (out_channels if bias else 0)
        self.madds += weights * out_size * out_size
        if bn:
            self.bn += out_channels

    def grouped_pointwise(self, in_channels: int, out_channels: int, groups: int, size: int) -> None:
        for part_in, part_out in zip(split_channels(in_channels, groups), split_channels(out_channels, groups)):
            self.conv(part_in, part_out, 1, size, bn=False)
        self.bn += out_channels

    def dense(self, in_features: int, out_features: int) -> None:
        self.weights += in_features * out_features + out_features
        self.madds += in_features * out_features


def _layer_tally(layer: LayerPlan) -> _Tally:
    tally = _Tally()
    if layer.kind == "conv":
        tally.conv(layer.in_channels, layer.out_channels, layer.kernel[0], layer.output_size)
    else:
        if layer.has_expand:
            tally.grouped_pointwise(layer.in_channels, layer.mid_channels, layer.expand_groups,
                                    layer.input_size)
        for channels, kernel in zip(layer.kernel_splits(), layer.kernel):
            tally.conv(channels, channels, kernel, layer.output_size, groups=channels, bn=False)
        tally.bn += layer.mid_channels
    if layer.se_channels:
        tally.conv(layer.mid_channels, layer.se_channels, 1, 1, bias=True, bn=False)
        tally.conv(layer.se_channels, layer.mid_channels, 1, 1, bias=True, bn=False)
    if layer.kind != "conv":
        tally.grouped_pointwise(layer.mid_channels, layer.out_channels, layer.project_groups,
                                layer.output_size)
    return tally


def _row(name: str, op: str, in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
         tally: _Tally) -> LayerRow:
    return LayerRow(name=name, op=op, input_shape=in_shape, output_shape=out_shape,
                    params=tally.weights + 2 * tally.bn, bn_channels=tally.bn, madds=tally.madds)


def _layer_op(layer: LayerPlan) -> str:
    kernel = "/".join(str(k) for k in layer.kernel)
    text = {"conv": f"conv{kernel}", "dwsep": f"dwsep{kernel}",
            "mbconv": f"mbconv{kernel} x{layer.mid_channels}"}[layer.kind]
    if layer.se_channels:
        text += f" se{layer.se_channels}"
    if layer.skip != "none":
        text += f" +{layer.skip}"
    return f"{text} {layer.act}"


def profile(spec: ArchSpec, resolution: int | None = None) -> Profile:
    """Count parameters and multiply-adds of ``spec`` at ``resolution`` (default: the spec's)."""
    size = resolution or spec.resolution
    rows: list[LayerRow] = []
    stem_size = stem_output_size(spec, size)
    stem = _Tally()
    stem.conv(spec.in_channels, spec.stem.channels, spec.stem.kernel, stem_size)
    rows.append(_row("stem", f"conv{spec.stem.kernel} s{spec.stem.stride} {spec.stem.act}",
                     (spec.in_channels, size, size), (spec.stem.channels, stem_size, stem_size), stem))
    layers = plan_layers(spec, size)
    for layer in layers:
        rows.append(_row(layer.name, _layer_op(layer),
                         (layer.in_channels, layer.input_size, layer.input_size),
                         (layer.out_channels, layer.output_size, layer.output_size), _layer_tally(layer)))
    last_channels, last_size = layers[-1].out_channels, layers[-1].output_size
    head = _Tally()
    head.conv(last_channels, spec.head.channels, 1, last_size)
    rows.append(_row("head", f"conv1 {spec.head.act}", (last_channels, last_size, last_size),
                     (spec.head.channels, last_size, last_size), head))
    features = spec.head.channels
    if spec.head.hidden is not None:
        hidden = _Tally()
        hidden.dense(features, spec.head.hidden)
        rows.append(_row("hidden", f"dense {spec.head.act}", (features, 1, 1), (spec.head.hidden, 1, 1), hidden))
        features = spec.head.hidden
    classifier = _Tally()
    classifier.dense(features, spec.num_classes)
    rows.append(_row("classifier", "dense", (features, 1, 1), (spec.num_classes, 1, 1), classifier))
    trainable = sum(row.params for row in rows)
    bn_stats = 2 * sum(row.bn_channels for row in rows)
    return Profile(resolution=size, params=trainable, params_with_bn_stats=trainable + bn_stats,
                   madds=sum(row.madds for row in rows), layers=tuple(rows))


def format_table(result: Profile) -> str:
    """The per-layer table and totals as aligned text: every column as wide as its widest cell."""
    cells = [("layer", "op", "input", "output", "params", "MAdds")]
    for row in result.layers:
        cells.append((row.name, row.op, "x".join(str(v) for v in row.input_shape),
                      "x".join(str(v) for v in row.output_shape), f"{row.params:,}", f"{row.madds:,}"))
    widths = [max(len(line[column]) for line in cells) for column in range(len(cells[0]))]
    left = (True, True, False, False, False, False)  # names and ops read left to right, numbers align right

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(value.ljust(width) if flush else value.rjust(width)
                         for value, width, flush in zip(values, widths, left)).rstrip()

    header = line(cells[0])
    lines = [header, "-" * len(header)] + [line(values) for values in cells[1:]]
    lines.append("-" * len(header))
    lines.append(f"resolution {result.resolution}  params {result.params:,} (trainable)  "
                 f"{result.params_with_bn_stats:,} (with BN stats)  MAdds {result.madds / 1e6:.1f}M")
    return "\n".join(lines)


__all__ = ["Profile", "LayerRow", "profile", "format_table", "output_size"]
