"""Optional packages: one way to import them, one error when they are missing.

``optional_import("mindcv", "mindcv==0.3.0")`` returns the module, or raises
:class:`~nas.spec.errors.MissingDependencyError` whose message is the ``pip install`` line, which
the CLI prints as one line with exit code 2.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from nas.spec.errors import MissingDependencyError

# module name -> (what needs it, the requirement to install)
OPTIONAL = {
    "mindcv": ("importing MindCV models", "mindcv==0.3.0"),
    "psycopg2": ("a PostgreSQL campaign storage", "mindspore-nas[postgres]"),
    "optuna_dashboard": ("the live dashboard", "mindspore-nas[dashboard]"),
    "onnxruntime": ("the ONNX Runtime latency backend", "onnxruntime"),
}


def install_hint(module: str) -> str:
    """The sentence that says what needs ``module`` and how to install it."""
    purpose, requirement = OPTIONAL.get(module, ("this command", module))
    return f"{purpose} needs the package {module!r}: pip install '{requirement}'"


def optional_import(module: str) -> ModuleType:
    """Import ``module`` (one of :data:`OPTIONAL`), or raise :class:`MissingDependencyError`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(install_hint(module)) from None
