"""Validation of trained weights and export for deployment (MINDIR for MindSpore Lite / Ascend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np

from nas.models.builder import build_network
from nas.models.checkpoint import load_weights, spec_for_checkpoint
from nas.models.mindcv import load_mindcv
from nas.models.onnx import export_onnx
from nas.spec.arch import ArchSpec
from nas.spec.checks import check_int
from nas.spec.errors import NasError
from nas.training.config import DataConfig
from nas.training.data import open_data
from nas.training.engine import Evaluation, evaluate, set_execution_mode

EXPORT_FORMATS = ("MINDIR", "AIR", "ONNX")


def load_trained(spec: ArchSpec | None, ckpt: str | Path, *, mindcv_model: str | None = None) -> tuple[ArchSpec, Any]:
    """The spec and a network holding the checkpoint's weights (ours, or MindCV's via the importer)."""
    if mindcv_model is not None:
        return load_mindcv(mindcv_model, ckpt)
    spec = spec_for_checkpoint(spec, ckpt)
    net = build_network(spec)
    load_weights(net, ckpt)
    return spec, net


def validate(spec: ArchSpec | None, ckpt: str | Path, data_source: str, *, resolution: int | None = None,
             batch_size: int = 64, mindcv_model: str | None = None) -> Evaluation:
    """Top-1 / top-5 of trained weights on the data's validation split."""
    check_int("batch_size", batch_size, 1)
    set_execution_mode("graph")
    spec, net = load_trained(spec, ckpt, mindcv_model=mindcv_model)
    data = open_data(DataConfig(source=data_source, resolution=resolution or spec.resolution))
    if data.num_classes != spec.num_classes:
        raise NasError(f"the checkpoint classifies {spec.num_classes} classes but {data_source!r} has "
                       f"{data.num_classes}")
    return evaluate(net, data.validation(batch_size))


def export_model(spec: ArchSpec | None, ckpt: str | Path, output: str | Path, *, file_format: str = "MINDIR",
                 batch_size: int = 1, resolution: int | None = None) -> Path:
    """Export the trained network with a fixed input shape; returns the written file."""

    file_format = file_format.upper()
    if file_format not in EXPORT_FORMATS:
        raise NasError(f"--format: must be one of {list(EXPORT_FORMATS)} (got {file_format!r})")
    check_int("batch_size", batch_size, 1)
    if resolution is not None:
        check_int("resolution", resolution, 8, 4096)
    set_execution_mode("graph")
    spec, net = load_trained(spec, ckpt)
    net.set_train(False)
    size = resolution or spec.resolution
    example = ms.Tensor(np.zeros((batch_size, spec.in_channels, size, size), np.float32))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}[file_format]
    stem = output.with_suffix("") if output.suffix.lower() == suffix else output
    if file_format == "ONNX":
        return export_onnx(net, example, stem)
    try:
        ms.export(net, example, file_name=str(stem), file_format=file_format)
    except (RuntimeError, ValueError, TypeError) as error:
        raise NasError(f"export to {file_format} failed: {str(error).splitlines()[0]}") from None
    written = stem.with_name(stem.name + suffix)
    if not written.is_file():
        raise NasError(f"export to {file_format} wrote no file at {str(written)!r}")
    return written
