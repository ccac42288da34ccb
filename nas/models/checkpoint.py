"""Checkpoints that carry their spec, and strict loading with named mismatches."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import mindspore as ms
from mindspore import nn

from nas.spec import ArchSpec, SpecError

SPEC_KEY = "arch_spec_yaml"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not match the network."""


def save_weights(net: nn.Cell, path: str | Path, spec: ArchSpec | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Save ``net``'s parameters, with the spec YAML embedded when given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    append: dict[str, Any] = dict(extra or {})
    if spec is not None:
        append[SPEC_KEY] = spec.to_yaml()
    tmp = path.with_name(path.stem + ".partial.ckpt")  # MindSpore insists on the .ckpt suffix
    ms.save_checkpoint(net, str(tmp), append_dict=append or None)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file into a name -> value dict, with a clear error if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    try:
        return dict(ms.load_checkpoint(str(path)))
    except Exception as error:  # MindSpore raises several types for corrupt files
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable MindSpore checkpoint: "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


def embedded_spec(path: str | Path) -> ArchSpec | None:
    """The spec embedded in a checkpoint saved by :func:`save_weights`, if any."""
    text = read_checkpoint(path).get(SPEC_KEY)
    return ArchSpec.from_yaml(text) if isinstance(text, str) else None


def load_weights(net: nn.Cell, source: str | Path | Mapping[str, Any], *, origin: str | None = None) -> None:
    """Load every parameter of ``net`` from a checkpoint path or dict, strictly.

    Every network parameter must be present with the same shape; extra entries that are not
    parameters of the network (optimizer state, the embedded spec) are ignored.
    """
    label = origin or (str(source) if not isinstance(source, Mapping) else "checkpoint")
    values = read_checkpoint(source) if not isinstance(source, Mapping) else dict(source)
    params = dict(net.parameters_and_names())
    missing = [name for name in params if name not in values]
    if missing:
        raise CheckpointError(f"checkpoint {label!r} does not match the spec: missing {missing[0]!r} "
                              f"({len(missing)} of {len(params)} parameters missing)")
    for name, param in params.items():
        shape = tuple(getattr(values[name], "shape", ()))
        if shape != tuple(param.shape):
            raise CheckpointError(f"checkpoint {label!r} does not match the spec: {name!r} has shape "
                                  f"{shape}, the network expects {tuple(param.shape)}")
    subset = {name: values[name] for name in params}
    not_loaded, _ = ms.load_param_into_net(net, subset, strict_load=True)
    if not_loaded:
        raise CheckpointError(f"checkpoint {label!r}: could not load {not_loaded[0]!r}")


def spec_for_checkpoint(spec: ArchSpec | None, ckpt: str | Path) -> ArchSpec:
    """The given spec, or the one embedded in the checkpoint."""
    if spec is not None:
        return spec
    found = embedded_spec(ckpt)
    if found is None:
        raise SpecError("spec", str(ckpt), "no --spec given and the checkpoint embeds none")
    return found
