"""ONNX export of any network we build, for ONNX Runtime and the edge toolchains that start from ONNX.

MindSpore's ONNX exporter has no mapping for ``HSwish``, ``HSigmoid`` (and, on some versions,
``SiLU``), nor for the channel padding (``PadV3``) of the pooling skip. :func:`onnx_ready` swaps
those cells, in place, for cells built from primitives the exporter maps (``x * relu6(x + 3) / 6``,
``relu6(x + 3) / 6``, ``x * sigmoid(x)``, tiled zeros); they compute the same function, and on
MindSpore's CPU kernels the same bits (the tests compare the logits before and after the swap
exactly). :func:`export_onnx` exports a cell and names the op and the layer when the exporter still
refuses one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mindspore as ms
from mindspore import nn, ops

from nas.models.blocks import PoolSkip
from nas.spec.errors import NasError


class OnnxExportError(NasError):
    """The network holds an op that MindSpore's ONNX exporter cannot write."""


class HardSwish(nn.Cell):
    """``x * relu6(x + 3) / 6`` from exportable primitives."""

    def construct(self, x: Any) -> Any:
        return x * ops.relu6(x + 3.0) / 6.0


class HardSigmoid(nn.Cell):
    """``relu6(x + 3) / 6`` from exportable primitives."""

    def construct(self, x: Any) -> Any:
        return ops.relu6(x + 3.0) / 6.0


class Swish(nn.Cell):
    """``x * sigmoid(x)`` from exportable primitives."""

    def construct(self, x: Any) -> Any:
        return x * ops.sigmoid(x)


_REPLACEMENTS: dict[type, type] = {nn.HSwish: HardSwish, nn.HSigmoid: HardSigmoid, nn.SiLU: Swish}


def onnx_ready(net: nn.Cell) -> nn.Cell:
    """``net`` with every activation the exporter refuses replaced by its primitive form, and the
    pooling skip's channel padding done by concatenating tiled zeros (in place)."""
    for _, cell in list(net.cells_and_names()):
        if isinstance(cell, PoolSkip):
            cell.tile_zeros = True
        for child_name, child in list(cell.name_cells().items()):
            replacement = _REPLACEMENTS.get(type(child))
            if replacement is not None:
                setattr(cell, child_name, replacement())
    return net


def _layer_of(net: nn.Cell, op: str) -> str:
    for name, cell in net.cells_and_names():
        if type(cell).__name__.lower() == op.lower():
            return name or "(the network itself)"
    return "(unknown layer)"


def export_onnx(net: nn.Cell, example: Any, path: str | Path) -> Path:
    """Export ``net`` (made :func:`onnx_ready` first) for the input ``example`` to ``path`` (.onnx)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() == ".onnx" else path
    onnx_ready(net)
    net.set_train(False)
    try:
        ms.export(net, example, file_name=str(stem), file_format="ONNX")
    except (RuntimeError, ValueError, TypeError) as error:
        text = " ".join(str(error).split())
        found = re.search(r"find key (\w+) in convert map", text)
        if found:
            op = found.group(1)
            raise OnnxExportError(f"ONNX export: MindSpore cannot export the op {op!r} (layer "
                                  f"{_layer_of(net, op)})") from None
        raise OnnxExportError(f"ONNX export failed: {text[:300]}") from None
    written = stem.with_name(stem.name + ".onnx")
    if not written.is_file():
        raise OnnxExportError(f"ONNX export wrote no file at {str(written)!r}")
    return written
