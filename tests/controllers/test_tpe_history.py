"""``tpe`` conditions on a bounded history: Optuna's TPE exactly up to ``history`` trials, and
beyond, Optuna's TPE over the most recent ``history`` trials plus the best before them."""
from __future__ import annotations

import functools
import random
import zlib

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights

from controllers import ControllerOptionError, make_controller
from controllers.optuna_study import (
    TPE_BEST,
    OlderBest,
    OptunaController,
    random_states,
    recent_history,
    restore_random_states,
)
from search_spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("mnasnet")


def objective(decisions: dict) -> float:
    """Deterministic, with no ties: some choices are better, and every architecture differs."""
    jitter = zlib.crc32(repr(sorted(decisions.items())).encode()) / 2 ** 32
    return 0.5 + 0.1 * (decisions["b0_op"] == "conv") + 0.02 * sum(
        decisions[f"b{i}_kernel"] == 5 for i in range(7)) + 0.01 * jitter


def run(controller, trials: int) -> list[dict]:
    asked = []
    for _ in range(trials):
        trial = controller.ask()
        controller.tell(trial, objective(trial.decisions))
        asked.append(dict(trial.decisions))
    return asked


def test_up_to_its_history_it_proposes_what_optunas_tpe_proposes(space) -> None:
    ours = make_controller("tpe", space, 3, history=30)
    optunas = OptunaController(space, optuna.samplers.TPESampler(seed=3), name="tpe", seed=3)
    assert run(ours, 30) == run(optunas, 30)


def test_beyond_its_history_it_proposes_what_optunas_tpe_proposes_on_the_recent_and_best_trials(space) -> None:
    history = 12
    ours = make_controller("tpe", space, 5, history=history)
    run(ours, 45)
    trials = ours.study.get_trials(deepcopy=False)
    kept = recent_history(trials, history, maximize=True)
    older = trials[:-history]
    best = sorted(older, key=lambda t: t.value, reverse=True)[:TPE_BEST]
    assert kept == sorted(best, key=lambda t: t.number) + trials[-history:]
    assert len(kept) == TPE_BEST + history

    reference = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=5))
    reference.add_trials(kept)  # a study holding only those trials, in the same order
    restore_random_states(reference.sampler, random_states(ours.study.sampler))
    reference_controller = OptunaController(space, reference.sampler, name="tpe", seed=5)
    reference_controller.study = reference
    assert ours.ask().decisions == reference_controller.ask().decisions


def _frozen(number: int, state: str, value: float | None) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=number, state=optuna.trial.TrialState[state], value=value, values=None, datetime_start=None,
        datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=number)


@pytest.mark.parametrize("maximize", [True, False])
def test_the_best_before_the_recent_trials_kept_across_asks_equal_those_read_afresh(maximize: bool) -> None:
    """A study that grows one trial an ask: trials finish late (some never, some fail), values
    tie, and now and then a trial is seen only 30 asks after later ones (another driver's)."""
    rng = random.Random(11 if maximize else 12)
    history, finish_at, states = 20, {}, {}
    kept = OlderBest(maximize)
    for ask in range(400):
        states[ask] = ("RUNNING", None)
        finish_at[ask] = ask + rng.choice([1, 2, 3, 40, 10 ** 6])  # 10 ** 6: still running at the end
        for number, when in finish_at.items():
            if when == ask:
                states[number] = ("FAIL", None) if rng.random() < 0.1 else ("COMPLETE", float(rng.randint(0, 30)))
        hidden = {number for number in states if number % 53 == 7 and ask - number < 30}  # read late, below the
        # boundary by then: another driver's trial
        trials = [_frozen(number, *states[number]) for number in sorted(states) if number not in hidden]
        expected = trials
        if len(trials) > history:
            older = [t for t in trials[:-history] if t.state.name == "COMPLETE"]
            best = sorted(older, key=lambda t: t.value, reverse=maximize)[:TPE_BEST]  # stable: earlier first
            expected = sorted(best, key=lambda t: t.number) + trials[-history:]
        assert recent_history(trials, history, maximize, kept) == expected
        assert recent_history(trials, history, maximize) == expected
    assert len(kept.best) == TPE_BEST and kept.running  # the case ran: trials still running below the boundary


def test_history_is_checked_by_name(space) -> None:
    for bad in (0, -3, 2.5, "all", True):
        with pytest.raises(ControllerOptionError, match="history"):
            make_controller("tpe", space, 0, history=bad)
    with pytest.raises(ControllerOptionError, match="history"):  # the known options name it
        make_controller("tpe", space, 0, histroy=10)
    run(make_controller("tpe", space, 0, history=None), 12)  # None: every trial, as Optuna's TPE
    with pytest.raises(ControllerOptionError, match="history"):  # the independent TPE reads every trial
        make_controller("tpe", space, 0, multivariate=False, history=100)
    assert make_controller("tpe", space, 0, multivariate=False).study.sampler._history is None


def test_keeping_internal_values_and_the_faster_density_change_no_proposal(space) -> None:
    ours = make_controller("tpe", space, 7, history=12)
    plain = make_controller("tpe", space, 7, history=12)
    sampler = plain.study.sampler  # Optuna's own conversion, afresh on every ask, and its own estimator
    sampler._get_internal_repr = functools.partial(optuna.samplers.TPESampler._get_internal_repr, sampler)
    sampler._parzen_estimator_cls = _ParzenEstimator
    assert ours.study.sampler._parzen_estimator_cls is not _ParzenEstimator
    assert run(ours, 60) == run(plain, 60)
    assert 0 < len(ours.study.sampler._rows) <= 12 + TPE_BEST  # bounded by the window


def test_the_categorical_log_density_is_optunas_to_the_bit(space) -> None:
    estimator = make_controller("tpe", space, 0).study.sampler._parzen_estimator_cls
    rng = np.random.RandomState(3)
    search_space = {"op": optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"]),
                    "kernel": optuna.distributions.CategoricalDistribution([3, 5]),
                    "skip": optuna.distributions.CategoricalDistribution([True])}
    parameters = _ParzenEstimatorParameters(prior_weight=1.0, consider_magic_clip=True, consider_endpoints=False,
                                            weights=default_weights, multivariate=True)
    for count in (0, 1, 7, 300):
        observations = {name: rng.randint(0, len(d.choices), count) for name, d in search_space.items()}
        samples = {name: rng.randint(0, len(d.choices), 24).astype(float) for name, d in search_space.items()}
        ours, optunas = (kind(observations, search_space, parameters) for kind in (estimator, _ParzenEstimator))
        assert np.array_equal(ours.log_pdf(samples), optunas.log_pdf(samples))
    numeric = {"ratio": optuna.distributions.FloatDistribution(0.0, 1.0), **search_space}
    observations = {name: rng.randint(0, len(d.choices), 9).astype(float) if name in search_space else rng.rand(9)
                    for name, d in numeric.items()}  # a numeric decision: Optuna's own density
    mixed = estimator(observations, numeric, parameters)
    assert np.array_equal(mixed.log_pdf(observations), _ParzenEstimator(observations, numeric, parameters).log_pdf(
        observations))
