"""MindSpore cells for the layers of a spec.

Parameter names (stable; NetAdapt surgery and checkpoint import rely on them):

- ``stem.conv.weight``, ``stem.bn.{gamma,beta,moving_mean,moving_variance}``
- ``blocks.<b>.<l>.expand.conv.weight`` / ``.expand.bn.*``  (mbconv with an expansion)
- ``blocks.<b>.<l>.dw.conv.weight`` / ``.dw.bn.*``          (dwsep and mbconv)
- ``blocks.<b>.<l>.conv.conv.weight`` / ``.conv.bn.*``      (regular conv blocks)
- ``blocks.<b>.<l>.se.reduce.{weight,bias}``, ``.se.expand.{weight,bias}``
- ``blocks.<b>.<l>.project.conv.weight`` / ``.project.bn.*``
- ``head.conv.weight``, ``head.bn.*``, ``hidden.{weight,bias}`` (mobilenet_v3 head),
  ``classifier.{weight,bias}``

Where a conv is split into groups (MixConv kernels, MixNet's grouped 1x1 convs), ``conv``
is a list and its parts are ``conv.<g>.weight``.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from nas.spec.layers import LayerPlan
from nas.spec.parts import split_channels


def make_activation(name: str) -> nn.Cell:
    """A fresh activation cell for one of the spec's activation names."""
    cells = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.HSwish, "swish": nn.SiLU,
             "sigmoid": nn.Sigmoid, "hsigmoid": nn.HSigmoid}
    return cells[name]()


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int, padding: str,
          bias: bool = False) -> nn.Conv2d:
    if kernel == 1 and stride == 1:
        return nn.Conv2d(in_channels, out_channels, 1, 1, pad_mode="valid", group=groups, has_bias=bias)
    if padding == "same":
        return nn.Conv2d(in_channels, out_channels, kernel, stride, pad_mode="same", group=groups,
                         has_bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel, stride, pad_mode="pad", padding=kernel // 2,
                     group=groups, has_bias=bias)


class ConvBnAct(nn.Cell):
    """Conv (possibly split into groups, each with its own kernel) + BN + optional activation.

    ``depthwise`` makes each group a depthwise conv; otherwise each group is a dense conv from
    its share of the input channels to its share of the output channels (MixConv's split rule).
    """

    def __init__(self, in_channels: int, out_channels: int, kernels: tuple[int, ...], stride: int = 1,
                 *, depthwise: bool = False, act: str | None = None, padding: str = "symmetric",
                 bn_momentum: float = 0.9, bn_eps: float = 1e-5) -> None:
        super().__init__()
        groups = len(kernels)
        self.in_splits = split_channels(in_channels, groups)
        out_splits = split_channels(out_channels, groups)
        parts = [
            _conv(part_in, part_out, kernel, stride, part_in if depthwise else 1, padding)
            for part_in, part_out, kernel in zip(self.in_splits, out_splits, kernels)
        ]
        self.split = groups > 1
        self.conv = nn.CellList(parts) if self.split else parts[0]
        self.bn = nn.BatchNorm2d(out_channels, momentum=bn_momentum, eps=bn_eps)
        self.has_act = act is not None
        self.act = make_activation(act) if act is not None else nn.Identity()

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        if self.split:
            pieces = ops.split(x, self.in_splits, axis=1)
            outputs = []
            for index, conv in enumerate(self.conv):
                outputs.append(conv(pieces[index]))
            x = ops.concat(outputs, axis=1)
        else:
            x = self.conv(x)
        x = self.bn(x)
        if self.has_act:
            x = self.act(x)
        return x


class SqueezeExcite(nn.Cell):
    """Global average pool, 1x1 reduce + act, 1x1 expand + gate, and scale the input."""

    def __init__(self, channels: int, reduced: int, act: str, gate: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, pad_mode="valid", has_bias=True)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(reduced, channels, 1, pad_mode="valid", has_bias=True)
        self.gate = make_activation(gate)

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        scale = x.mean(axis=(2, 3), keep_dims=True)
        scale = self.gate(self.expand(self.act(self.reduce(scale))))
        return x * scale


class DropPath(nn.Cell):
    """Stochastic depth on the residual branch, in training only."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.keep = 1.0 - rate

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        if not self.training or self.keep >= 1.0:
            return x
        shape = (x.shape[0], 1, 1, 1)
        mask = ops.floor(self.keep + ops.rand(shape, dtype=x.dtype))
        return x / self.keep * mask


class PoolSkip(nn.Cell):
    """The pooling skip: average-pool the input to the output size, then zero-pad or truncate
    its channels to the output width."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=stride, stride=stride, pad_mode="same") if stride > 1 else None
        self.pad = max(0, out_channels - in_channels)
        self.out_channels = out_channels
        self.truncate = in_channels > out_channels
        self.tile_zeros = False  # ONNX export: zeros by tiling (MindSpore cannot export channel padding)

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        if self.truncate:
            x = x[:, :self.out_channels]
        if self.pad > 0 and self.tile_zeros:
            x = ops.concat((x, ops.tile(x[:, :1] * 0.0, (1, self.pad, 1, 1))), 1)
        elif self.pad > 0:
            x = ops.pad(x, (0, 0, 0, 0, 0, self.pad))
        return x


class Layer(nn.Cell):
    """One layer of a block, built from its :class:`~nas.spec.layers.LayerPlan`."""

    def __init__(self, plan: LayerPlan, *, padding: str, bn_momentum: float, bn_eps: float,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        self.kind = plan.kind
        self.has_expand = plan.has_expand
        if plan.kind == "conv":
            self.conv = ConvBnAct(plan.in_channels, plan.out_channels, plan.kernel, plan.stride,
                                  act=plan.act, padding=padding, **bn)
        else:
            if plan.has_expand:
                self.expand = ConvBnAct(plan.in_channels, plan.mid_channels, (1,) * plan.expand_groups,
                                        act=plan.act, **bn)
            self.dw = ConvBnAct(plan.mid_channels, plan.mid_channels, plan.kernel, plan.stride,
                                depthwise=True, act=plan.act, padding=padding, **bn)
        self.has_se = plan.se_channels > 0
        if self.has_se:
            self.se = SqueezeExcite(plan.mid_channels, plan.se_channels, plan.se_act, plan.se_gate)
        if plan.kind != "conv":
            self.project = ConvBnAct(plan.mid_channels, plan.out_channels, (1,) * plan.project_groups, **bn)
        self.skip = plan.skip
        if plan.skip == "pool":
            self.shortcut = PoolSkip(plan.in_channels, plan.out_channels, plan.stride)
        self.has_drop_path = drop_path > 0 and plan.skip != "none"
        if self.has_drop_path:
            self.drop_path = DropPath(drop_path)

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        if self.kind == "conv":
            y = self.conv(x)
        else:
            y = self.dw(self.expand(x)) if self.has_expand else self.dw(x)
        if self.has_se:
            y = self.se(y)
        if self.kind != "conv":
            y = self.project(y)
        if self.skip == "none":
            return y
        if self.has_drop_path:
            y = self.drop_path(y)
        if self.skip == "identity":
            return x + y
        return self.shortcut(x) + y
