"""Build a MindSpore network from an :class:`~nas.spec.arch.ArchSpec`.

The builder holds what a single block cannot know: the running width, the spatial size,
the BN settings and the drop-path schedule. Parameter names are documented in
:mod:`nas.models.blocks`. The network works in GRAPH and PYNATIVE mode.
"""
from __future__ import annotations

import math

import mindspore as ms
from mindspore import nn
from mindspore.common import initializer as init

from nas.models.blocks import ConvBnAct, Layer, make_activation
from nas.spec.arch import ArchSpec
from nas.spec.checks import check_int
from nas.spec.errors import SpecError
from nas.spec.layers import plan_layers


class ArchNet(nn.Cell):
    """The network of one spec: stem, blocks, head, pooling and classifier."""

    def __init__(self, spec: ArchSpec, num_classes: int, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        bn = {"bn_momentum": spec.bn_momentum, "bn_eps": spec.bn_eps}
        self.stem = ConvBnAct(spec.in_channels, spec.stem.channels, (spec.stem.kernel,), spec.stem.stride,
                              act=spec.stem.act, padding=spec.stem.padding, **bn)
        plans = plan_layers(spec)
        total = len(plans)
        stages: list[nn.Cell] = []
        for block_index in range(len(spec.blocks)):
            layers = []
            for position, plan in enumerate(plans):
                if plan.block != block_index:
                    continue
                rate = drop_path_rate * position / max(1, total)
                layers.append(Layer(plan, padding=spec.padding, drop_path=rate, **bn))
            stages.append(nn.SequentialCell(layers))
        self.blocks = nn.CellList(stages)
        self.head = ConvBnAct(spec.blocks[-1].out, spec.head.channels, (1,), act=spec.head.act, **bn)
        features = spec.head.channels
        self.has_hidden = spec.head.hidden is not None
        if spec.head.hidden is not None:
            self.hidden = nn.Dense(features, spec.head.hidden)
            self.hidden_act = make_activation(spec.head.act)
            features = spec.head.hidden
        self.dropout = nn.Dropout(p=spec.dropout) if spec.dropout > 0 else nn.Identity()
        self.classifier = nn.Dense(features, num_classes)
        self.num_features = features

    def forward_features(self, x: ms.Tensor) -> ms.Tensor:
        """Stem, blocks and head conv: the feature map before pooling."""
        x = self.stem(x)
        for stage in self.blocks:
            x = stage(x)
        return self.head(x)

    def forward_head(self, x: ms.Tensor) -> ms.Tensor:
        """Pool, optional hidden layer, dropout and classifier."""
        x = x.mean(axis=(2, 3))
        if self.has_hidden:
            x = self.hidden_act(self.hidden(x))
        return self.classifier(self.dropout(x))

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        return self.forward_head(self.forward_features(x))


def initialize_weights(net: nn.Cell) -> None:
    """He-normal (fan-out) convs, N(0, 0.01) dense layers, BN at identity, zero biases."""
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            fan_out = cell.kernel_size[0] * cell.kernel_size[1] * cell.out_channels // cell.group
            cell.weight.set_data(init.initializer(init.Normal(sigma=math.sqrt(2.0 / fan_out)),
                                                  cell.weight.shape, cell.weight.dtype))
            if cell.bias is not None:
                cell.bias.set_data(init.initializer("zeros", cell.bias.shape, cell.bias.dtype))
        elif isinstance(cell, nn.Dense):
            cell.weight.set_data(init.initializer(init.Normal(sigma=0.01), cell.weight.shape, cell.weight.dtype))
            if cell.bias is not None:
                cell.bias.set_data(init.initializer("zeros", cell.bias.shape, cell.bias.dtype))


def build_network(spec: ArchSpec, num_classes: int | None = None, *, drop_path_rate: float = 0.0,
                  seed: int | None = None) -> ArchNet:
    """Build the network of ``spec`` (``num_classes`` overrides the spec's).

    With ``seed`` the initial weights are reproducible.
    """
    if not isinstance(spec, ArchSpec):
        raise SpecError("spec", type(spec).__name__, "build_network needs an ArchSpec")
    classes = spec.num_classes if num_classes is None else num_classes
    check_int("num_classes", classes, 1, error=SpecError)
    if not 0.0 <= drop_path_rate < 1.0:
        raise SpecError("drop_path_rate", drop_path_rate, "must be in [0, 1)")
    if seed is not None:
        ms.set_seed(seed)
    net = ArchNet(spec, classes, drop_path_rate)
    initialize_weights(net)
    return net
