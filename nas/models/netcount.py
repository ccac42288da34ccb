"""Count parameters and multiply-adds by running a real MindSpore network.

An independent check of :mod:`nas.spec.profile`: forward hooks on every ``Conv2d`` and ``Dense``
record the shapes that actually flow, so the same counter applies to MindCV's models and ours.
"""
from __future__ import annotations

from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import nn


@dataclass(frozen=True)
class NetworkCount:
    params: int
    params_with_bn_stats: int
    madds: int


def count_network(net: nn.Cell, resolution: int, in_channels: int = 3) -> NetworkCount:
    """Run one image through ``net`` in PYNATIVE mode and count Conv2d/Dense multiply-adds."""
    madds = [0]

    def on_conv(cell: nn.Conv2d, inputs: tuple, output: ms.Tensor) -> None:
        weight = cell.weight.shape  # (out, in / group, kh, kw)
        _, channels, height, width = output.shape
        madds[0] += channels * height * width * weight[1] * weight[2] * weight[3]

    def on_dense(cell: nn.Dense, inputs: tuple, output: ms.Tensor) -> None:
        madds[0] += int(np.prod(cell.weight.shape))

    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    handles = []
    try:
        for _, cell in net.cells_and_names():
            if isinstance(cell, nn.Conv2d):
                handles.append(cell.register_forward_hook(on_conv))
            elif isinstance(cell, nn.Dense):
                handles.append(cell.register_forward_hook(on_dense))
        was_training = net.training
        net.set_train(False)
        net(ms.Tensor(np.zeros((1, in_channels, resolution, resolution), np.float32)))
        net.set_train(was_training)
    finally:
        for handle in handles:
            handle.remove()
        ms.set_context(mode=previous_mode)
    trainable = sum(int(np.prod(p.shape)) for p in net.trainable_params())
    everything = sum(int(np.prod(p.shape)) for p in net.get_parameters())
    return NetworkCount(params=trainable, params_with_bn_stats=everything, madds=madds[0])
