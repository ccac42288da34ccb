"""The StudyController contract: what the campaign driver relies on, run over every controller.

Each controller drives a real Optuna study on SQLite through ``study_controller``.
"""
from __future__ import annotations

import shutil

import optuna
import pytest

from controllers import Failed, UnknownTrialError
from controllers.base import StudyController
from controllers.optuna_bridge import study_controller
from search_spaces import get_space
from tests.controllers.test_controllers import FAST, NAMES, toy_value


@pytest.fixture(scope="module")
def space():
    return get_space("mnasnet")


def make(name: str, space, storage: str, seed: int = 0) -> StudyController:
    return study_controller(name, space, seed, storage=storage, study_name="contract", **FAST.get(name, {}))


@pytest.fixture(params=NAMES)
def name(request) -> str:
    return request.param


def test_is_a_study_controller_whose_asks_are_study_trials(name: str, space, tmp_path) -> None:
    controller = make(name, space, f"sqlite:///{tmp_path / 'study.db'}")
    assert isinstance(controller, StudyController)
    trial = controller.ask()
    assert space.decode(trial.decisions).blocks  # every ask is a point of the space
    running = controller.study.get_trials(deepcopy=False)[-1]
    assert running.number == trial.number and running.state == optuna.trial.TrialState.RUNNING
    assert running.params == dict(trial.decisions)
    assert controller.pending_numbers() == [trial.number]


def test_tell_stores_values_and_user_attrs_and_failures(name: str, space, tmp_path) -> None:
    controller = make(name, space, f"sqlite:///{tmp_path / 'study.db'}")
    good, bad = controller.ask(), controller.ask()
    controller.set_user_attrs(good, {"stage": "training"})
    assert controller.study.get_trials(deepcopy=False)[good.number].user_attrs == {"stage": "training"}
    controller.tell(good, toy_value(name, good.decisions), user_attrs={"arch_id": "abc"})
    controller.tell(bad.number, Failed("out of memory"))
    done = {trial.number: trial for trial in controller.study.get_trials(deepcopy=False)}
    assert done[good.number].state == optuna.trial.TrialState.COMPLETE
    assert done[good.number].user_attrs == {"stage": "training", "arch_id": "abc"}
    expected = toy_value(name, good.decisions)
    assert done[good.number].values == (list(expected) if isinstance(expected, tuple) else [expected])
    assert done[bad.number].state == optuna.trial.TrialState.FAIL
    assert done[bad.number].user_attrs["failure"] == "out of memory"
    assert controller.pending_numbers() == []
    with pytest.raises(UnknownTrialError):
        controller.tell(good, toy_value(name, good.decisions))
    with pytest.raises(UnknownTrialError):
        controller.set_user_attrs(good, {"late": True})


def test_ask_fixed_records_the_given_decisions(name: str, space, tmp_path) -> None:
    controller = make(name, space, f"sqlite:///{tmp_path / 'study.db'}")
    decisions = space.center()
    trial = controller.ask_fixed(decisions)
    assert dict(trial.decisions) == dict(decisions)
    assert controller.study.get_trials(deepcopy=False)[trial.number].params == dict(decisions)
    controller.tell(trial, toy_value(name, trial.decisions))
    following = controller.ask()  # the controller goes on proposing after a fixed trial
    assert following.number == trial.number + 1


def test_asks_leave_a_trial_enqueued_by_others_waiting(name: str, space, tmp_path) -> None:
    """The driver's asks skip Optuna's queue (reading it costs a read of every unfinished trial),
    and a fixed ask records its own decisions, not those of a trial left in the queue."""
    controller = make(name, space, f"sqlite:///{tmp_path / 'study.db'}")
    left = dict(space.center())
    controller.study.enqueue_trial(left)
    asked = controller.ask()
    assert asked.number == 1
    own = dict(asked.decisions)
    assert own != left
    fixed = controller.ask_fixed(own)
    assert dict(fixed.decisions) == own
    trials = controller.study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["WAITING", "RUNNING", "RUNNING"]
    assert trials[2].params == own and trials[0].system_attrs["fixed_params"] == left


def test_a_saved_state_continues_exactly(name: str, space, tmp_path) -> None:
    original = make(name, space, f"sqlite:///{tmp_path / 'study.db'}")
    for _ in range(4):
        trial = original.ask()
        original.tell(trial, toy_value(name, trial.decisions))
    state = original.state_dict()
    shutil.copy(tmp_path / "study.db", tmp_path / "copy.db")
    restored = make(name, space, f"sqlite:///{tmp_path / 'copy.db'}")
    restored.load_state_dict(state)
    for _ in range(4):
        first, second = original.ask(), restored.ask()
        assert (first.number, dict(first.decisions)) == (second.number, dict(second.decisions))
        original.tell(first, toy_value(name, first.decisions))
        restored.tell(second, toy_value(name, second.decisions))


def test_a_trial_finished_after_the_saved_state_is_replayed_once(name: str, space, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    original = make(name, space, storage)
    for _ in range(3):
        trial = original.ask()
        original.tell(trial, toy_value(name, trial.decisions))
    late = original.ask()
    state = original.state_dict()  # saved while `late` runs
    original.tell(late, toy_value(name, late.decisions))  # the driver dies before saving again

    resumed = make(name, space, storage)
    resumed.load_state_dict(state, allow_later_trials=True)
    assert resumed.pending_numbers() == [late.number]
    resumed.replay(resumed.study.get_trials(deepcopy=False)[late.number])
    assert resumed.pending_numbers() == []
    with pytest.raises(UnknownTrialError):
        resumed.replay(resumed.study.get_trials(deepcopy=False)[late.number])
    assert resumed.ask().number == late.number + 1
