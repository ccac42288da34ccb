"""Strict YAML configs: read as data only (:mod:`nas.spec.yamlio`), unknown keys rejected by name.

Shared by training recipes, campaign configs and NetAdapt configs, so that every config
error reads the same way: ``<file>: <section.key>: <reason> (got <value>)``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, TypeVar

from nas.spec.errors import ConfigError
from nas.spec.yamlio import read_yaml_file

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing, oversized, binary or malformed file is a named
    error (:mod:`nas.spec.yamlio`)."""
    path = Path(path)
    data = read_yaml_file(path, "config file")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the document must be a mapping of settings")
    return dict(data)


def check_keys(data: Any, allowed: list[str] | tuple[str, ...], where: str) -> None:
    """Reject keys of ``data`` that are not ``allowed``, naming the first one."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping (got {data!r})")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {sorted(allowed)}" if where
                              else f"{key}: unknown key; allowed: {sorted(allowed)}")


def build_dataclass(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Construct the dataclass ``cls`` from ``data`` strictly; errors name ``where.key``."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping (got {data!r})")
    values = dict(data or {})
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(values, names, where)
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        message = str(error)
        raise ConfigError(f"{where}: {message}" if where and not message.startswith(where) else message) from None
