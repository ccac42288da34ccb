"""The ground layer: architecture specs and the project's validators and errors. Pure Python.

Everything may import this package; it imports nothing else of the project, and no MindSpore.
"""
from __future__ import annotations

from nas.spec.arch import ArchSpec, spec_from_dict, spec_to_dict
from nas.spec.errors import ConfigError, FieldError, MissingDependencyError, NasError, SpecError
from nas.spec.parts import (
    ACTIVATIONS,
    BLOCK_KINDS,
    FAMILIES,
    GATES,
    HEAD_KINDS,
    PADDINGS,
    SE_BASES,
    SKIPS,
    BlockSpec,
    HeadSpec,
    SESpec,
    StemSpec,
    make_divisible,
    split_channels,
)

__all__ = [
    "ArchSpec", "BlockSpec", "HeadSpec", "SESpec", "StemSpec", "spec_from_dict", "spec_to_dict", "make_divisible",
    "split_channels", "ACTIVATIONS", "BLOCK_KINDS", "FAMILIES", "GATES", "HEAD_KINDS", "PADDINGS", "SE_BASES", "SKIPS",
    "NasError", "FieldError", "SpecError", "ConfigError", "MissingDependencyError",
]
