"""ONNX export: every reference and sampled specs of every space export, and ONNX Runtime computes
what MindSpore computes."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import onnxruntime as ort
import pytest
from mindspore import nn, ops

from nas.models.builder import build_network
from nas.models.checkpoint import save_weights
from nas.models.onnx import OnnxExportError, export_onnx, onnx_ready
from search_spaces import get_space, references, space_names
from tests.support.cli import run_nas
from tests.support.weights import random_values


def _randomised(spec):
    net = build_network(spec, seed=0)
    values = random_values(net, 0)
    for name, param in net.parameters_and_names():
        param.set_data(ms.Tensor(values[name]))
    net.set_train(False)
    return net


def _specs() -> list:
    found = [references.get(name).replace(num_classes=10, resolution=32) for name in references.names()]
    for name in space_names():
        space = get_space(name)
        rng = np.random.default_rng(0)
        found += [space.decode(space.sample(rng)).replace(num_classes=10, resolution=32) for _ in range(2)]
    return found


@pytest.mark.slow  # about twenty exports
@pytest.mark.parametrize("spec", _specs(), ids=lambda spec: spec.name[:40])
def test_every_network_exports_and_onnx_runtime_agrees(spec, tmp_path, graph_mode) -> None:
    net = _randomised(spec)
    x = np.random.RandomState(1).rand(2, spec.in_channels, 32, 32).astype(np.float32)
    before = net(ms.Tensor(x)).asnumpy()
    path = export_onnx(net, ms.Tensor(x), tmp_path / "net.onnx")
    after = net(ms.Tensor(x)).asnumpy()
    assert np.array_equal(before, after)  # the exportable activations compute the same bits
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert logits.shape == before.shape
    assert np.abs(logits - before).max() <= 1e-4 * max(1.0, float(np.abs(before).max()))


def test_the_swap_replaces_every_refused_activation(graph_mode) -> None:
    net = onnx_ready(build_network(references.get("mobilenet_v3_small").replace(num_classes=10, resolution=32)))
    kinds = {type(cell) for _, cell in net.cells_and_names()}
    assert not kinds & {nn.HSwish, nn.HSigmoid, nn.SiLU}


class _Shrink(nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.shrink = nn.HShrink()

    def construct(self, x):
        return self.shrink(ops.relu(x))


def test_an_op_the_exporter_refuses_is_named_with_its_layer(tmp_path, graph_mode) -> None:
    with pytest.raises(OnnxExportError, match=r"HShrink.*layer shrink"):
        export_onnx(_Shrink(), ms.Tensor(np.ones((1, 4), np.float32)), tmp_path / "x.onnx")


def test_nas_export_model_writes_an_onnx_file(tmp_path, graph_mode) -> None:
    spec = references.get("mobilenet_v3_small").replace(num_classes=10, resolution=32)
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())
    save_weights(build_network(spec, seed=0), tmp_path / "model.ckpt", spec)
    done = run_nas("export-model", "--ckpt", str(tmp_path / "model.ckpt"), "--format", "ONNX",
                   "-o", str(tmp_path / "v3s.onnx"))
    assert done.returncode == 0, done.stderr
    session = ort.InferenceSession(str(tmp_path / "v3s.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 10)
