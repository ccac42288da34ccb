"""Search spaces: turn named categorical decisions into architecture specs. Pure Python.

    space = get_space("mnasnet", se_ratios=[0])          # options as in a campaign YAML
    point = space.sample(numpy.random.default_rng(0))     # {"b0_op": "mbconv_e6", ...}
    spec = space.decode(point)                            # an ArchSpec
    space.encode(spec) == space.canonical(point)

Spaces: ``mnasnet`` (MnasNet's factorized hierarchical space around MobileNetV2),
``mobilenet_v3`` and ``mobilenet_v3_small`` (MobileNetV3-style, centred on Large / Small).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from search_spaces.base import (
    Decision, DecisionError, FactorizedSpace, NotInSpaceError, SearchSpace, SpaceError, SpaceOptionError,
    UnknownSpaceError,
)


def _mnasnet(name: str, **options: Any) -> SearchSpace:
    from search_spaces.mnasnet import MnasNetSpace

    return MnasNetSpace(name, **options)


def _mobilenet_v3(reference: str) -> Callable[..., SearchSpace]:
    def make(name: str, **options: Any) -> SearchSpace:
        from search_spaces.mobilenet_v3 import MobileNetV3Space

        return MobileNetV3Space(name, **{"reference": reference, **options})

    return make


_REGISTRY: dict[str, Callable[..., SearchSpace]] = {
    "mnasnet": _mnasnet,
    "mobilenet_v3": _mobilenet_v3("mobilenet_v3_large"),
    "mobilenet_v3_small": _mobilenet_v3("mobilenet_v3_small"),
}


def space_names() -> list[str]:
    """The registered space names."""
    return sorted(_REGISTRY)


def get_space(name: str, **options: Any) -> SearchSpace:
    """The space ``name`` with ``options`` (unknown names and options raise named errors)."""
    if name not in _REGISTRY:
        raise UnknownSpaceError(f"unknown space {name!r}; known: {space_names()}")
    return _REGISTRY[name](name, **options)


def space_from_config(config: str | Mapping[str, Any]) -> SearchSpace:
    """A space from a campaign config entry: a name, or ``{name: ..., <option>: ...}``."""
    if isinstance(config, str):
        return get_space(config)
    if not isinstance(config, Mapping) or "name" not in config:
        raise SpaceOptionError("name", config, "a space config is a name or a mapping with a 'name' key")
    options = {key: value for key, value in config.items() if key != "name"}
    return get_space(config["name"], **options)


__all__ = [
    "SearchSpace", "Decision", "FactorizedSpace", "get_space", "space_names", "space_from_config",
    "SpaceError", "SpaceOptionError", "DecisionError", "NotInSpaceError", "UnknownSpaceError",
]
