"""Search spaces: turn named categorical decisions into architecture specs. Pure Python.

    space = get_space("mnasnet", se_ratios=[0])          # options as in a campaign YAML
    point = space.sample(numpy.random.default_rng(0))     # {"b0_op": "mbconv_e6", ...}
    spec = space.decode(point)                            # an ArchSpec
    space.encode(spec) == space.canonical(point)

Spaces: ``mnasnet`` (MnasNet's factorized hierarchical space around MobileNetV2),
``mobilenet_v3`` and ``mobilenet_v3_small`` (MobileNetV3-style, centred on Large / Small).
"""
from __future__ import annotations

from search_spaces.base import (
    Decision,
    DecisionError,
    FactorizedSpace,
    NotInSpaceError,
    SearchSpace,
    SpaceError,
    SpaceOptionError,
    UnknownSpaceError,
)
from search_spaces.registry import get_space, space_from_config, space_names

__all__ = [
    "SearchSpace", "Decision", "FactorizedSpace", "get_space", "space_names", "space_from_config",
    "SpaceError", "SpaceOptionError", "DecisionError", "NotInSpaceError", "UnknownSpaceError",
]
