"""Controllers: everything that proposes architectures, behind one ask/tell interface.

    ctrl = make_controller("rl", space, seed=0, batch_size=10)
    trial = ctrl.ask()                        # trial.number, trial.decisions
    ctrl.tell(trial, reward)                  # or a tuple (multi-objective), or Failed(reason)

Names: ``rl`` (LSTM policy + PPO, as in MnasNet; NumPy), ``evolution`` (aging
evolution), and the Optuna samplers ``tpe``, ``nsga2`` (multi-objective) and ``random``, which
run an Optuna study (``storage=`` any Optuna URL, None for memory). To run ``rl`` or
``evolution`` inside an Optuna study as well, use :func:`controllers.optuna_bridge.study_controller`.
Optuna is imported only when a controller that needs it is made.
"""
from __future__ import annotations

from controllers.base import (
    Controller,
    ControllerError,
    ControllerOptionError,
    Failed,
    StudyController,
    TellValueError,
    Trial,
    UnknownControllerError,
    UnknownTrialError,
)
from controllers.registry import controller_names, make_controller
from controllers.statefile import StateFileError, StateMismatchError, load_state, save_state

__all__ = [
    "make_controller", "controller_names", "Controller", "StudyController", "Trial", "Failed", "ControllerError",
    "ControllerOptionError", "UnknownControllerError", "UnknownTrialError", "TellValueError", "save_state",
    "load_state", "StateFileError", "StateMismatchError",
]
