"""Random weights and BN statistics, so that equal outputs mean equal functions."""
from __future__ import annotations

from typing import Any

import numpy as np


def random_values(net: Any, seed: int) -> dict[str, np.ndarray]:
    """Every parameter of ``net``: BN statistics and affine terms drawn at random, convolution and
    dense weights kept (the builder's He-normal initialisation keeps activations near 1)."""
    rng = np.random.RandomState(seed)
    values = {}
    for name, param in net.parameters_and_names():
        shape = param.shape
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith(("moving_mean", "beta", "bias")):
            value = rng.uniform(-0.3, 0.3, shape)
        elif name.endswith("gamma"):
            value = rng.uniform(0.7, 1.3, shape)
        else:
            value = param.asnumpy()
        values[name] = value.astype(np.float32)
    return values
