"""MindCV interop: MindCV model names as specs, and MindCV checkpoints in our parameter names.

A MindCV model maps to one of our references at a width (``mnasnet_075`` is MnasNet-B1 at 0.75,
MindCV's MnasNet being B1 in the torchvision layout). A checkpoint converts by pairing MindCV's
parameters, in the order the real MindCV model defines them, with ours; every pair must agree in
shape and role (weight, bias, gamma, ...), so a wrong pairing is an error, never a silent mix.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mindspore as ms

from nas.models.builder import build_network
from nas.models.checkpoint import CheckpointError, load_weights, read_checkpoint, save_weights
from nas.spec.arch import ArchSpec
from nas.spec.optional import optional_import
from search_spaces import references

_FIXED = {
    "mobilenet_v3_small_100": ("mobilenet_v3_small", 1.0),
    "mobilenet_v3_small_075": ("mobilenet_v3_small", 0.75),
    "mobilenet_v3_large_100": ("mobilenet_v3_large", 1.0),
    "mobilenet_v3_large_075": ("mobilenet_v3_large", 0.75),
    "mixnet_s": ("mixnet_s", 1.0),
    "mixnet_m": ("mixnet_m", 1.0),
    "mixnet_l": ("mixnet_m", 1.3),
}
_PATTERNS = [
    (re.compile(r"mnasnet_(\d{3})"), "mnasnet_b1"),
    (re.compile(r"mobilenet_v2_(\d{3})"), "mobilenet_v2"),
]


def mindcv_names() -> list[str]:
    """MindCV model names this importer understands."""
    return sorted(list(_FIXED) + [f"mnasnet_{w}" for w in ("050", "075", "100", "130", "140")]
                  + [f"mobilenet_v2_{w}" for w in ("035", "050", "075", "100", "130", "140")])


def mindcv_reference(model: str) -> tuple[str, float]:
    """The (reference name, width) of a MindCV model name."""
    if model in _FIXED:
        return _FIXED[model]
    for pattern, reference in _PATTERNS:
        match = pattern.fullmatch(model)
        if match:
            return reference, int(match.group(1)) / 100
    raise KeyError(f"unknown MindCV model {model!r}; known: {mindcv_names()}")


def spec_from_mindcv(model: str, num_classes: int = 1000) -> ArchSpec:
    """The spec whose network computes the same function as MindCV's ``model``."""
    reference, width = mindcv_reference(model)
    spec = references.get(reference, width)
    return spec.replace(num_classes=num_classes, name=model)


def _mindcv_model(model: str, num_classes: int) -> Any:
    mindcv = optional_import("mindcv")
    return mindcv.create_model(model, num_classes=num_classes, pretrained=False)


def _role(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def convert_mindcv_params(model: str, params: dict[str, Any], spec: ArchSpec) -> dict[str, Any]:
    """Rename MindCV parameters (name -> Parameter/Tensor) into our network's names."""
    theirs = [name for name, _ in _mindcv_model(model, spec.num_classes).parameters_and_names()]
    ours = [(name, tuple(p.shape)) for name, p in build_network(spec).parameters_and_names()]
    missing = [name for name in theirs if name not in params]
    if missing:
        raise CheckpointError(f"MindCV checkpoint for {model!r} lacks {missing[0]!r} "
                              f"({len(missing)} of {len(theirs)} parameters missing)")
    if len(theirs) != len(ours):
        raise CheckpointError(f"{model!r} has {len(theirs)} parameters, the spec {len(ours)}")
    converted: dict[str, Any] = {}
    for their_name, (our_name, shape) in zip(theirs, ours):
        value = params[their_name]
        their_shape = tuple(value.shape)
        if their_shape != shape or _role(their_name) != _role(our_name):
            raise CheckpointError(f"MindCV {their_name!r} {their_shape} does not pair with {our_name!r} {shape}; "
                                  f"the checkpoint does not match {model!r}")
        converted[our_name] = ms.Parameter(ms.Tensor(value.asnumpy()), name=our_name)
    return converted


def load_mindcv(model: str, ckpt: str | Path) -> tuple[ArchSpec, Any]:
    """The spec of MindCV's ``model`` (classes read from the checkpoint's classifier) and our
    network holding the checkpoint's weights."""
    mindcv_reference(model)  # unknown names fail before any file is read
    optional_import("mindcv")  # and so does a missing MindCV
    params = read_checkpoint(ckpt)
    classifier = [value for name, value in params.items() if name.startswith("classifier") and name.endswith("bias")]
    num_classes = int(classifier[-1].shape[0]) if classifier else 1000
    spec = spec_from_mindcv(model, num_classes)
    net = build_network(spec)
    load_weights(net, convert_mindcv_params(model, params, spec), origin=str(ckpt))
    return spec, net


def import_mindcv(model: str, ckpt: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``spec.yaml`` and ``model.ckpt`` (our names, spec embedded) for a MindCV checkpoint."""
    spec, net = load_mindcv(model, ckpt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.yaml"
    spec_path.write_text(spec.to_yaml())
    ckpt_path = save_weights(net, out / "model.ckpt", spec)
    return spec_path, ckpt_path
