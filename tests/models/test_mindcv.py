"""MindCV interop: imported checkpoints compute exactly MindCV's function."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from nas.models.builder import build_network
from nas.models.checkpoint import CheckpointError, load_weights
from nas.models.mindcv import import_mindcv, mindcv_reference, spec_from_mindcv
from nas.spec import ArchSpec
from tests.support.weights import random_values


def _randomise(net, seed: int) -> None:
    """Random weights and BN statistics, so that equal logits mean equal functions."""
    values = random_values(net, seed)
    for name, param in net.parameters_and_names():
        param.set_data(ms.Tensor(values[name]))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenet_v3_small_100", "mobilenet_v3_large_100", "mnasnet_100", "mixnet_s"])
def test_imported_network_equals_mindcv(tmp_path, graph_mode, model: str) -> None:
    import mindcv

    ms.set_seed(0)
    theirs = mindcv.create_model(model, num_classes=10)
    _randomise(theirs, 1)
    ms.save_checkpoint(theirs, str(tmp_path / "mindcv.ckpt"))
    spec_path, ckpt_path = import_mindcv(model, tmp_path / "mindcv.ckpt", tmp_path / "out")
    spec = ArchSpec.from_yaml(spec_path)
    assert spec.num_classes == 10
    ours = build_network(spec)
    load_weights(ours, ckpt_path)
    theirs.set_train(False)
    ours.set_train(False)
    x = ms.Tensor(np.random.RandomState(2).randn(2, 3, 96, 96).astype(np.float32))
    diff = np.abs(theirs(x).asnumpy() - ours(x).asnumpy()).max()
    assert diff <= 1e-4


def test_mindcv_names_map_to_references() -> None:
    assert mindcv_reference("mnasnet_075") == ("mnasnet_b1", 0.75)
    assert mindcv_reference("mixnet_l") == ("mixnet_m", 1.3)
    assert spec_from_mindcv("mobilenet_v3_large_075", 5).num_classes == 5
    with pytest.raises(KeyError, match="known"):
        mindcv_reference("resnet50")


def test_checkpoint_that_does_not_match_is_named(tmp_path) -> None:
    import mindcv

    theirs = mindcv.create_model("mobilenet_v3_small_100", num_classes=10)
    ms.save_checkpoint(theirs, str(tmp_path / "small.ckpt"))
    with pytest.raises(CheckpointError, match="lacks 'features"):
        import_mindcv("mobilenet_v3_large_100", tmp_path / "small.ckpt", tmp_path / "out")
    net = build_network(spec_from_mindcv("mobilenet_v3_large_100", 10))
    with pytest.raises(CheckpointError, match="does not match the spec"):
        load_weights(net, tmp_path / "small.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_weights(net, tmp_path / "junk.ckpt")
