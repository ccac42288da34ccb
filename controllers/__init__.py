"""Controllers: everything that proposes architectures, behind one ask/tell interface.

    ctrl = make_controller("rl", space, seed=0, batch_size=10)
    trial = ctrl.ask()                        # trial.number, trial.decisions
    ctrl.tell(trial, reward)                  # or a tuple (multi-objective), or Failed(reason)

Names: ``rl`` (LSTM policy + PPO in MindSpore, as in MnasNet), ``evolution`` (aging
evolution), and the Optuna samplers ``tpe``, ``nsga2`` (multi-objective) and ``random``, which
run an Optuna study (``storage=`` any Optuna URL, None for memory). To run ``rl`` or
``evolution`` inside an Optuna study as well, use :func:`controllers.optuna_bridge.study_controller`.
MindSpore and Optuna are imported only when a controller that needs them is made.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from controllers.base import (
    Controller, ControllerError, ControllerOptionError, Failed, TellValueError, Trial, UnknownControllerError,
    UnknownTrialError, load_state, save_state,
)
from search_spaces import SearchSpace


def _rl(space: SearchSpace, seed: int, **options: Any) -> Controller:
    from controllers.rl import RLController

    _check_options("rl", RLController, options)
    return RLController(space, seed, **options)


def _evolution(space: SearchSpace, seed: int, **options: Any) -> Controller:
    from controllers.evolution import EvolutionController

    _check_options("evolution", EvolutionController, options)
    return EvolutionController(space, seed, **options)


def _optuna_maker(name: str) -> Callable[..., Controller]:
    def make(space: SearchSpace, seed: int, **options: Any) -> Controller:
        from controllers import optuna_study

        return getattr(optuna_study, f"make_{name}")(space, seed, **options)

    return make


_REGISTRY: dict[str, Callable[..., Controller]] = {
    "rl": _rl,
    "evolution": _evolution,
    "tpe": _optuna_maker("tpe"),
    "nsga2": _optuna_maker("nsga2"),
    "random": _optuna_maker("random"),
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
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ControllerOptionError(name, "seed", seed, "must be an integer")
    return _REGISTRY[name](space, seed, **options)


__all__ = [
    "make_controller", "controller_names", "Controller", "Trial", "Failed", "ControllerError",
    "ControllerOptionError", "UnknownControllerError", "UnknownTrialError", "TellValueError", "save_state",
    "load_state",
]
