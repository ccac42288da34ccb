"""Controllers: one ask/tell interface, determinism, resume, bad input, and RL that learns."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from controllers import (
    ControllerError,
    ControllerOptionError,
    Failed,
    TellValueError,
    Trial,
    UnknownControllerError,
    UnknownTrialError,
    controller_names,
    load_state,
    make_controller,
    save_state,
)
from controllers.base import Controller
from controllers.optuna_bridge import study_controller
from search_spaces import get_space

NAMES = ["rl", "evolution", "tpe", "nsga2", "random"]
FAST = {"rl": {"batch_size": 4, "epochs": 2}, "evolution": {"population_size": 6, "sample_size": 3}}


@pytest.fixture(scope="module")
def space():
    return get_space("mnasnet")


def toy_value(name: str, decisions: dict) -> float | tuple[float, float]:
    """A deterministic toy objective: some choices are better than others."""
    score = 0.5 + 0.1 * (decisions["b0_op"] == "conv") + 0.02 * sum(decisions[f"b{i}_kernel"] == 5 for i in range(7))
    return (score, 10.0 + 5 * (decisions["b1_se"] > 0)) if name == "nsga2" else score


def make(name: str, space, seed: int = 0, **options) -> Controller:
    return make_controller(name, space, seed, **{**FAST.get(name, {}), **options})


def run(controller: Controller, name: str, trials: int) -> list[dict]:
    asked = []
    for _ in range(trials):
        trial = controller.ask()
        asked.append(dict(trial.decisions))
        controller.tell(trial, toy_value(name, trial.decisions))
    return asked


# ----- registry and bad input ---------------------------------------------------------------------------

def test_registry_and_unknown_controller(space) -> None:
    assert controller_names() == sorted(NAMES)
    with pytest.raises(UnknownControllerError) as error:
        make_controller("bayes", space)
    assert isinstance(error.value, KeyError)
    assert str(error.value) == f"unknown controller 'bayes'; known: {sorted(NAMES)}"


@pytest.mark.parametrize("name,options,option", [
    ("rl", {"colour": 1}, "colour"), ("rl", {"batch_size": 0}, "batch_size"), ("rl", {"learning_rate": -1.0},
                                                                                 "learning_rate"),
    ("rl", {"storage": "sqlite://"}, "storage"), ("evolution", {"sample_size": 99}, "sample_size"),
    ("tpe", {"colour": 1}, "colour"), ("nsga2", {"directions": ["up"]}, "directions"),
    ("random", {"n_startup_trials": 3}, "n_startup_trials"),
])
def test_bad_options_raise_named_errors(space, name: str, options: dict, option: str) -> None:
    with pytest.raises(ControllerOptionError) as error:
        make_controller(name, space, 0, **options)
    assert error.value.option == option and repr(option) in str(error.value)


@pytest.mark.parametrize("name", NAMES)
def test_tell_on_unknown_or_finished_trials_and_bad_values(space, name: str) -> None:
    controller = make(name, space)
    trial = controller.ask()
    with pytest.raises(UnknownTrialError):
        controller.tell(trial.number + 100, toy_value(name, trial.decisions))
    with pytest.raises(UnknownTrialError):
        controller.tell(Trial(trial.number + 1, trial.decisions), toy_value(name, trial.decisions))
    bad_values = [None, math.nan, "0.5", True, (0.5, 1.0, 2.0)] + ([0.5] if name == "nsga2" else [(0.5, 1.0)])
    for bad in bad_values:
        with pytest.raises(TellValueError):
            controller.tell(trial, bad)
    controller.tell(trial, toy_value(name, trial.decisions))  # still pending after the bad tells
    with pytest.raises(UnknownTrialError):
        controller.tell(trial, toy_value(name, trial.decisions))


# ----- determinism and resume --------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_asks_and_every_ask_is_in_the_space(space, name: str) -> None:
    first = run(make(name, space, seed=3), name, 14)
    again = run(make(name, space, seed=3), name, 14)
    assert first == again
    assert run(make(name, space, seed=4), name, 14) != first
    for point in first:
        assert space.validate(point) == point


@pytest.mark.parametrize("name", NAMES)
def test_a_restored_controller_continues_with_the_same_asks(space, name: str, tmp_path) -> None:
    original = make(name, space, seed=5)
    run(original, name, 9)
    pending = original.ask()  # asked, not yet told, when the state is saved
    save_state(original, tmp_path / "state.json")
    restored = make(name, space, seed=5)
    load_state(restored, tmp_path / "state.json")
    for controller in (original, restored):
        controller.tell(pending.number, toy_value(name, pending.decisions))
    assert run(restored, name, 11) == run(original, name, 11)


def test_state_from_another_configuration_is_refused(space, tmp_path) -> None:
    state = make("evolution", space, seed=1).state_dict()
    with pytest.raises(ControllerError, match="seed"):
        make("evolution", space, seed=2).load_state_dict(state)
    with pytest.raises(ControllerError, match="not a"):
        make("rl", space, seed=1).load_state_dict(state)
    with pytest.raises(ControllerError, match="not found"):
        load_state(make("evolution", space), tmp_path / "missing.json")


# ----- failures ------------------------------------------------------------------------------------------

def test_failures_are_trial_states_not_crashes(space) -> None:
    tpe = make("tpe", space)
    trial = tpe.ask()
    tpe.tell(trial, Failed("out of memory"))
    frozen = tpe.study.trials[0]
    assert frozen.state.name == "FAIL" and frozen.user_attrs["failure"] == "out of memory"
    evolution = make("evolution", space, population_size=2, sample_size=1)
    for _ in range(3):
        evolution.tell(evolution.ask(), Failed("diverged"))
    assert not evolution.state_dict()["population"]
    rl = make("rl", space)
    for _ in range(4):
        rl.tell(rl.ask(), Failed("diverged"))
    assert rl.history == []  # failures are left out of the batch: no update yet
    rl_penalised = make("rl", space, failure_reward=0.0)
    for _ in range(4):
        rl_penalised.tell(rl_penalised.ask(), Failed("diverged"))
    assert len(rl_penalised.history) == 1


# ----- the RL controller learns --------------------------------------------------------------------------

def test_ppo_raises_the_probability_of_rewarded_choices(space) -> None:
    controller = make_controller("rl", space, 0, batch_size=4, epochs=4)
    before = controller.probabilities()
    conv = space.decision("b0_op").index("conv")
    for _ in range(12 * 4):
        trial = controller.ask()
        controller.tell(trial, 1.0 if trial.decisions["b0_op"] == "conv" else 0.0)
    after = controller.probabilities()
    assert len(controller.history) == 12
    assert after[0][conv] > max(0.6, 2 * before[0][conv])
    for step, decision in enumerate(space.decisions):  # one softmax per decision, sized to its choices
        assert after[step].shape == (len(decision.choices),) and math.isclose(after[step].sum(), 1.0)
    lowered = [entry["loss_last_epoch"] < entry["loss_first_epoch"] for entry in controller.history]
    assert sum(lowered) >= 0.75 * len(lowered)  # PPO's epochs lower its surrogate loss


def test_rl_sampling_follows_the_policy_probabilities(space) -> None:
    controller = make_controller("rl", space, 1, batch_size=4, init_scale=1.0)  # far from uniform
    probabilities = controller.probabilities()
    draws = [controller.ask().decisions for _ in range(160)]  # nothing is told: the policy stays put
    counts = np.bincount([space.decision("b0_op").index(d["b0_op"]) for d in draws], minlength=4)
    assert probabilities[0].max() > 0.4  # far from uniform, so the check below means something
    assert np.abs(counts / 160 - probabilities[0]).max() < 0.1


# ----- Optuna studies -------------------------------------------------------------------------------------

def test_optuna_controllers_use_any_storage_and_continue_a_study(space, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = make_controller("tpe", space, 0, storage=storage, study_name="demo")
    asked = run(first, "tpe", 5)
    second = make_controller("tpe", space, 0, storage=storage, study_name="demo")
    assert [t.params for t in second.study.trials] == asked
    assert second.ask().number == 5


def test_nsga2_is_multi_objective(space) -> None:
    controller = make("nsga2", space)
    assert controller.directions == ("maximize", "minimize")
    run(controller, "nsga2", 6)
    assert all(len(t.values) == 2 for t in controller.study.trials)
    assert controller.study.best_trials


@pytest.mark.parametrize("name", ["rl", "evolution"])
def test_rl_and_evolution_run_inside_an_optuna_study(space, name: str, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    options = FAST[name]
    controller = study_controller(name, space, 0, storage=storage, study_name="x", **options)
    asked = []
    for _ in range(7):
        trial = controller.ask()
        asked.append(dict(trial.decisions))
        controller.tell(trial, toy_value(name, trial.decisions), user_attrs={"arch_id": f"a{trial.number}"})
    trials = controller.study.trials
    assert [t.params for t in trials] == asked and [t.values[0] for t in trials] == [toy_value(name, a) for a in asked]
    assert trials[3].user_attrs["arch_id"] == "a3"
    # the proposals are the wrapped controller's own: same seed, same asks
    assert asked == run(make(name, space, seed=0), name, 7)

    # resume: the state saved with a copy of the database continues exactly like the original
    save_state(controller, tmp_path / "state.json")
    shutil.copy(tmp_path / "study.db", tmp_path / "copy.db")
    restored = study_controller(name, space, 0, storage=f"sqlite:///{tmp_path / 'copy.db'}", study_name="x",
                                **options)
    load_state(restored, tmp_path / "state.json")
    assert run(restored, name, 6) == run(controller, name, 6)


def test_study_state_must_match_the_storage(space, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    controller = make_controller("random", space, 0, storage=storage, study_name="x")
    run(controller, "random", 3)
    state = controller.state_dict()
    run(controller, "random", 2)
    with pytest.raises(ControllerError, match="holds 5 trials"):
        make_controller("random", space, 0, storage=storage, study_name="x").load_state_dict(state)


def test_optuna_controllers_print_no_info_lines() -> None:
    """Optuna's "A new study created in memory" and per-trial INFO lines never reach the console."""
    code = ("from controllers import make_controller\nfrom search_spaces import get_space\n"
            "for name in ('tpe', 'nsga2', 'random'):\n"
            "    ctrl = make_controller(name, get_space('mnasnet'), seed=0)\n"
            "    trial = ctrl.ask()\n"
            "    ctrl.tell(trial, (0.5, 1.0) if name == 'nsga2' else 0.5)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "[I " not in result.stderr + result.stdout and "new study created" not in result.stderr
