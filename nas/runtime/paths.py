"""Where the framework keeps files between runs, and where it looks for datasets.

- ``cache_dir()``: ``$NAS_CACHE_DIR``, else ``~/.cache/nas``: the latency cache and anchor store,
  and datasets unpacked from their compressed files.
- ``data_dirs(name)``: where a named dataset (``fashion-mnist``, ``mnist``) is looked for, in
  order: ``$NAS_DATA_DIR/<name>``, ``$NAS_DATA_DIR`` itself, then ``/usr/share/datasets/<name>``
  (where Debian's ``dataset-*`` packages install them).
"""
from __future__ import annotations

import os
from pathlib import Path

SYSTEM_DATASETS = Path("/usr/share/datasets")


def cache_dir() -> Path:
    """``$NAS_CACHE_DIR``, else ``~/.cache/nas``."""
    return Path(os.environ.get("NAS_CACHE_DIR") or Path.home() / ".cache" / "nas")


def data_dirs(name: str) -> list[Path]:
    """The directories a named dataset is looked for in, first match wins."""
    found: list[Path] = []
    base = os.environ.get("NAS_DATA_DIR")
    if base:
        found += [Path(base).expanduser() / name, Path(base).expanduser()]
    return [*found, SYSTEM_DATASETS / name]
