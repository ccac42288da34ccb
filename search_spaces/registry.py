"""The registry of search spaces: names, options, and a space from a campaign config entry."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from search_spaces.base import SearchSpace, SpaceOptionError, UnknownSpaceError
from search_spaces.mnasnet import MnasNetSpace
from search_spaces.mobilenet_v3 import MobileNetV3Space


def _mobilenet_v3(reference: str) -> Callable[..., SearchSpace]:
    def make(name: str, **options: Any) -> SearchSpace:
        return MobileNetV3Space(name, **{"reference": reference, **options})

    return make


_REGISTRY: dict[str, Callable[..., SearchSpace]] = {
    "mnasnet": MnasNetSpace,
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
