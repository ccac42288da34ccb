"""The registry of controllers: ``make_controller(name, space, seed, **options)``.

Optuna is imported only when a controller that needs it is made.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from controllers.base import Controller, ControllerOptionError, UnknownControllerError
from controllers.evolution import EvolutionController
from controllers.optuna_study import make_nsga2, make_random, make_tpe
from controllers.rl import RLController
from nas.spec.checks import is_int
from search_spaces import SearchSpace


def _rl(space: SearchSpace, seed: int, **options: Any) -> Controller:
    _check_options("rl", RLController, options)
    return RLController(space, seed, **options)


def _evolution(space: SearchSpace, seed: int, **options: Any) -> Controller:
    _check_options("evolution", EvolutionController, options)
    return EvolutionController(space, seed, **options)


_REGISTRY: dict[str, Callable[..., Controller]] = {
    "rl": _rl,
    "evolution": _evolution,
    "tpe": make_tpe,
    "nsga2": make_nsga2,
    "random": make_random,
}


def _check_options(name: str, controller_type: type, options: dict[str, Any]) -> None:
    accepted = [parameter for parameter in inspect.signature(controller_type).parameters
                if parameter not in ("space", "seed")]
    for option, value in options.items():
        if option not in accepted:
            hint = "; run it in a study with controllers.optuna_bridge.study_controller" if option in (
                "storage", "study_name") else ""
            raise ControllerOptionError(name, option, value, f"unknown option; known: {sorted(accepted)}{hint}")


def controller_names() -> list[str]:
    """The registered controller names."""
    return sorted(_REGISTRY)


def make_controller(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Controller:
    """Controller ``name`` over ``space``; unknown names and options raise named errors."""
    if name not in _REGISTRY:
        raise UnknownControllerError(f"unknown controller {name!r}; known: {controller_names()}")
    if not is_int(seed):
        raise ControllerOptionError(name, "seed", seed, "must be an integer")
    return _REGISTRY[name](space, seed, **options)
