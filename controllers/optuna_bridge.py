"""Run any controller inside an Optuna study, so that every campaign is one study.

:class:`ControllerSampler` is an Optuna sampler that delegates to an ask/tell controller (RL,
evolution): Optuna's relative sampling asks the controller for all of a trial's decisions at
once (``sample_relative``), and ``after_trial`` tells it the trial's values, or ``Failed`` for a
FAIL or PRUNED trial. Trials the controller did not propose (enqueued with fixed parameters) are
not told to it; nor are trials whose proposal the study overrode with fixed parameters.

:func:`study_controller` is what a campaign calls:

    ctrl = study_controller("rl", space, seed=0, storage="sqlite:///runs/x/study.db",
                            study_name="x", batch_size=10)
    trial = ctrl.ask(); ...; ctrl.tell(trial, reward, user_attrs={"latency_ms": 61.2})
    save_state(ctrl, "runs/x/controller.json")      # and load_state(...) after a restart

Whatever proposes the trials, the study (one storage, one dashboard, one results table) holds
them all. The controller's own state (policy weights, population, random state) is not in the
storage: save it with :func:`controllers.save_state` next to the study.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from controllers.base import Controller, ControllerError, Failed
from controllers.optuna_study import (
    STUDY_OPTIONS,
    OptunaController,
    _optuna,
    distributions,
    random_states,
    restore_random_states,
)
from controllers.registry import make_controller
from search_spaces import SearchSpace

NATIVE = ("rl", "evolution")


def _sampler_base() -> type:
    base: type = _optuna().samplers.BaseSampler
    return base


class ControllerSampler(_sampler_base()):  # type: ignore[misc]
    """An Optuna sampler whose proposals come from an ask/tell controller."""

    def __init__(self, controller: Controller, seed: int = 0) -> None:
        optuna = _optuna()
        self.controller = controller
        self._distributions = distributions(controller.space)
        self._proposals: dict[int, tuple[int, dict[str, Any]]] = {}  # study trial -> controller trial
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return dict(self._distributions)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        proposal = self.controller.ask()
        self._proposals[trial.number] = (proposal.number, dict(proposal.decisions))
        return {name: value for name, value in proposal.decisions.items() if name in search_space}

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        """Parameters outside the space (none, for a campaign) are drawn at random."""
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Sequence[float] | None) -> None:
        optuna = _optuna()
        entry = self._proposals.pop(trial.number, None)
        if entry is None:
            return
        number, proposed = entry
        if any(trial.params.get(name) != value for name, value in proposed.items()):
            self.controller.tell(number, Failed("the study overrode the proposal with fixed parameters"))
        elif state == optuna.trial.TrialState.COMPLETE and values is not None:
            self.controller.tell(number, values[0] if len(values) == 1 else tuple(values))
        else:
            self.controller.tell(number, Failed(f"study trial {trial.number} ended {state.name}"))

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(),
                "proposals": {number: (inner, dict(decisions)) for number, (inner, decisions)
                              in self._proposals.items()},
                "fallback": random_states(self._fallback)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self._proposals = {int(number): (int(inner), dict(decisions)) for number, (inner, decisions)
                           in state["proposals"].items()}
        restore_random_states(self._fallback, state["fallback"])


def study_controller(name: str, space: SearchSpace, seed: int = 0, *, storage: str | None = None,
                     study_name: str | None = None, load_if_exists: bool = True, **options: Any) -> OptunaController:
    """Controller ``name`` driving an Optuna study (any storage URL; None: in memory).

    For ``tpe``, ``nsga2`` and ``random`` this is ``make_controller`` itself; ``rl`` and
    ``evolution`` propose through a :class:`ControllerSampler`.
    """
    study: dict[str, Any] = {"storage": storage, "study_name": study_name, "load_if_exists": load_if_exists}
    if name not in NATIVE:
        return make_controller(name, space, seed, **study, **options)  # type: ignore[return-value]
    for option in STUDY_OPTIONS:
        if option in options:
            raise ControllerError(f"controller {name!r}: option {option!r} does not apply to it")
    inner = make_controller(name, space, seed, **options)
    return OptunaController(space, ControllerSampler(inner, seed), name=name, seed=seed,
                            directions=inner.directions, **study)


__all__ = ["ControllerSampler", "study_controller"]
