"""Named reference architectures, shipped as spec YAML files in ``search_spaces/refs``.

The MindCV-compatible details (BN eps, padding, SE gates and rounding) follow MindCV 0.3.0's
own models, so that a MindCV checkpoint imports into exactly the same function. Two departures
from the TF originals are deliberate and documented: MixNet's SE uses ReLU inside (as MindCV
does), and MnasNet uses symmetric padding (MindSpore's and MindCV's convention).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from nas.spec import ArchSpec

_PACKAGE = "search_spaces.refs"


def names() -> list[str]:
    """The names of every shipped reference."""
    folder = resources.files(_PACKAGE)
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


@lru_cache(maxsize=None)
def _load(name: str) -> ArchSpec:
    text = resources.files(_PACKAGE).joinpath(f"{name}.yaml").read_text()
    return ArchSpec.from_yaml(text)


def get(name: str, width: float = 1.0) -> ArchSpec:
    """The reference ``name``, scaled by ``width`` with its family's rounding rules."""
    known = names()
    if name not in known:
        raise KeyError(f"unknown reference {name!r}; known: {known}")
    return _load(name).scaled(width)


def resolve(name_or_file: str, width: float = 1.0) -> ArchSpec:
    """A reference name, or a spec YAML file, scaled by ``width``."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return ArchSpec.from_yaml(path).scaled(width)
    return get(name_or_file, width)
