"""The MindSpore builder: forward passes in both modes and stable parameter names."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from nas.models.blocks import Layer
from nas.models.builder import build_network
from nas.spec import ArchSpec, SpecError
from nas.spec.layers import plan_layers
from search_spaces import references


@pytest.mark.slow
@pytest.mark.parametrize("name", references.names())
def test_every_reference_runs_in_graph_mode(graph_mode, name: str) -> None:
    spec = references.get(name)
    net = build_network(spec, num_classes=10, seed=0)
    net.set_train(False)
    for resolution in (224, 32):
        x = ms.Tensor(np.random.RandomState(0).rand(1, 3, resolution, resolution).astype(np.float32))
        logits = net(x).asnumpy()
        assert logits.shape == (1, 10)
        assert np.isfinite(logits).all()


def test_pynative_and_graph_give_the_same_logits() -> None:
    spec = references.get("mobilenet_v3_small", 0.5)
    net = build_network(spec, num_classes=7, seed=1)
    net.set_train(False)
    x = ms.Tensor(np.random.RandomState(1).rand(2, 3, 48, 48).astype(np.float32))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    eager = net(x).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = net(x).asnumpy()
    assert eager.shape == (2, 7)
    np.testing.assert_allclose(eager, graph, atol=1e-5)


def test_parameter_names_are_the_documented_ones() -> None:
    names = {name for name, _ in build_network(references.get("mobilenet_v3_small")).parameters_and_names()}
    for expected in ["stem.conv.weight", "stem.bn.gamma", "stem.bn.moving_variance",
                     "blocks.0.0.dw.conv.weight", "blocks.0.0.se.reduce.weight", "blocks.0.0.se.expand.bias",
                     "blocks.0.0.project.conv.weight", "blocks.1.1.expand.conv.weight", "blocks.4.2.project.bn.beta",
                     "head.conv.weight", "head.bn.beta", "hidden.weight", "classifier.bias"]:
        assert expected in names
    mixnet = {name for name, _ in build_network(references.get("mixnet_s")).parameters_and_names()}
    assert "blocks.3.0.dw.conv.2.weight" in mixnet and "blocks.1.0.expand.conv.1.weight" in mixnet


def _tiny(kind: str, skip: str, stride: int = 1, out: int = 16) -> ArchSpec:
    return ArchSpec.from_dict({
        "stem": {"channels": 8, "stride": 1}, "resolution": 8, "num_classes": 3, "dropout": 0.0,
        "blocks": [{"kind": kind, "out": out, "stride": stride, "repeats": 2, "skip": skip,
                    "expand": [24, 32] if kind == "mbconv" else None, "se": 0.25}],
        "head": {"kind": "mnasnet", "channels": 32}})


@pytest.mark.parametrize("kind", ["conv", "dwsep", "mbconv"])
@pytest.mark.parametrize("skip", ["none", "identity", "pool"])
def test_block_kinds_and_skips_build_and_run(kind: str, skip: str) -> None:
    ms.set_context(mode=ms.PYNATIVE_MODE)
    spec = _tiny(kind, skip, stride=2)
    net = build_network(spec, seed=0)
    net.set_train(False)
    assert net(ms.Tensor(np.ones((1, 3, 8, 8), np.float32))).shape == (1, 3)


def test_pool_skip_adds_the_pooled_input() -> None:
    """With the branch's projection zeroed, a pool-skip layer returns the pooled, padded input."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    spec = _tiny("dwsep", "pool", stride=2, out=12)
    layer = Layer(plan_layers(spec)[0], padding="symmetric", bn_momentum=0.9, bn_eps=1e-5)
    layer.set_train(False)
    layer.project.bn.gamma.set_data(ms.Tensor(np.zeros(12, np.float32)))
    x = np.random.RandomState(0).rand(1, 8, 8, 8).astype(np.float32)
    y = layer(ms.Tensor(x)).asnumpy()
    pooled = x.reshape(1, 8, 4, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(y[:, :8], pooled, atol=1e-6)
    np.testing.assert_allclose(y[:, 8:], 0.0, atol=1e-6)


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(SpecError, match="num_classes"):
        build_network(references.get("mobilenet_v2"), num_classes=0)
    with pytest.raises(SpecError, match="ArchSpec"):
        build_network("mobilenet_v2")  # type: ignore[arg-type]


def test_seed_makes_weights_reproducible() -> None:
    spec = references.get("mobilenet_v3_small", 0.5)
    first = build_network(spec, seed=3).stem.conv.weight.asnumpy()
    second = build_network(spec, seed=3).stem.conv.weight.asnumpy()
    np.testing.assert_array_equal(first, second)
