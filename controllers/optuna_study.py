"""Controllers that run an Optuna study: TPE, NSGA-II and random, through Optuna's ask/tell.

Each decision of the space is an Optuna categorical parameter with the same name and choices,
so a study holds the decisions of every trial, its values and its state (COMPLETE, or FAIL with
the reason in the ``failure`` user attribute). ``storage`` is any Optuna storage URL
(``sqlite:///runs/x/study.db``, ``postgresql://...``) or None for an in-memory study; with
``load_if_exists`` a second driver or a restarted one continues the same study.

Any sampler can drive the study, including the RL and evolution controllers through
:class:`controllers.optuna_bridge.ControllerSampler`.
"""
from __future__ import annotations

import bisect
import copy
import datetime
import functools
import heapq
import inspect
from typing import Any, Mapping, Sequence

import numpy as np

from controllers.base import (
    ControllerError,
    ControllerOptionError,
    Failed,
    Trial,
    UnknownTrialError,
    Value,
    check_state,
    check_value,
    trial_number,
)
from controllers.optuna_rdb import (
    count_trials,
    created_trial_cached,
    fast_trial_reads,
    params_in_one_transaction,
    write_finished,
    write_user_attrs,
)
from nas.spec.checks import is_int
from search_spaces import SearchSpace

FORMAT = "nas.controllers.optuna/1"
DIRECTIONS = ("maximize", "minimize")


_QUIETED = False


def _optuna() -> Any:
    """Optuna, imported on first use. Its INFO lines ("A new study created in memory", one per
    finished trial) are turned off once, at that first use: the campaign reports its own progress.
    ``optuna.logging.set_verbosity(optuna.logging.INFO)`` afterwards turns them back on."""
    global _QUIETED
    try:  # heavy: optuna takes about a second to import; the RL and evolution controllers never need it
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is a core dependency
        raise ControllerError("the Optuna controllers need optuna: pip install 'optuna>=4'") from error
    if not _QUIETED:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _QUIETED = True
    return optuna


def random_states(sampler: Any) -> dict[str, Any]:
    """The random states inside ``sampler`` (an Optuna sampler and the samplers it holds), as
    plain data keyed by attribute path. Optuna samplers keep all their randomness in NumPy
    ``RandomState`` objects (some behind a lazily seeded wrapper); the rest of their state is
    derived from the study's trials, so a sampler rebuilt with the same class and seed and given
    these states continues exactly. No pickle: the states are arrays and numbers."""
    found: dict[str, Any] = {}
    for path, holder, name, value in _random_slots(sampler):
        if value is None:
            found[path] = None
        else:
            kind, keys, position, has_gauss, gauss = value.get_state()
            found[path] = [str(kind), np.asarray(keys, np.uint32).tolist(), int(position), int(has_gauss),
                           float(gauss)]
    return found


def restore_random_states(sampler: Any, states: Mapping[str, Any]) -> None:
    """Put :func:`random_states` back into a sampler rebuilt with the same class and seed."""
    slots = {path: (holder, name) for path, holder, name, _ in _random_slots(sampler)}
    if set(slots) != set(states):
        raise ControllerError(f"the saved sampler state has random states {sorted(states)}, "
                              f"this sampler has {sorted(slots)}")
    for path, state in states.items():
        holder, name = slots[path]
        if state is None:
            setattr(holder, name, None)
            continue
        generator = np.random.RandomState()
        kind, keys, position, has_gauss, gauss = state
        generator.set_state((kind, np.asarray(keys, np.uint32), position, has_gauss, gauss))
        setattr(holder, name, generator)


def _random_slots(root: Any, depth_limit: int = 6) -> list[tuple[str, Any, str, Any]]:
    """``(path, holder, attribute, RandomState or None)`` for every random state under ``root``;
    a lazily seeded one that has not drawn yet shows as None."""
    slots: list[tuple[str, Any, str, Any]] = []
    seen: set[int] = set()
    pending: list[tuple[Any, str, int]] = [(root, "", 0)]
    while pending:  # bounded: each object once, at most depth_limit deep
        holder, prefix, depth = pending.pop()
        attributes = getattr(holder, "__dict__", None)
        if id(holder) in seen or attributes is None or depth > depth_limit:
            continue
        seen.add(id(holder))
        for name, value in sorted(attributes.items()):
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(value, np.random.RandomState):
                slots.append((path, holder, name, value))
            elif value is None and type(holder).__name__ == "LazyRandomState" and name == "_rng":
                slots.append((path, holder, name, None))
            elif type(value).__module__.startswith("optuna"):
                pending.append((value, path, depth + 1))
    return sorted(slots, key=lambda slot: slot[0])


def trial_data(trial: Any) -> dict[str, Any]:
    """An Optuna ``FrozenTrial`` as plain data (what a controller state may hold)."""
    optuna = _optuna()
    return {"number": trial.number, "state": trial.state.name, "values": trial.values,
            "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
            "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
            "params": dict(trial.params),
            "distributions": {name: optuna.distributions.distribution_to_json(distribution)
                              for name, distribution in trial.distributions.items()},
            "user_attrs": dict(trial.user_attrs), "system_attrs": dict(trial.system_attrs),
            "intermediate_values": dict(trial.intermediate_values), "trial_id": trial._trial_id}


def frozen_trial(data: Mapping[str, Any]) -> Any:
    """The ``FrozenTrial`` of :func:`trial_data`'s output."""
    optuna = _optuna()

    def moment(text: str | None) -> datetime.datetime | None:
        return None if text is None else datetime.datetime.fromisoformat(text)

    try:
        values = None if data["values"] is None else [float(value) for value in data["values"]]
        return optuna.trial.FrozenTrial(
            number=int(data["number"]), state=optuna.trial.TrialState[data["state"]], value=None,
            values=values, datetime_start=moment(data["datetime_start"]),
            datetime_complete=moment(data["datetime_complete"]), params=dict(data["params"]),
            distributions={name: optuna.distributions.json_to_distribution(text)
                           for name, text in data["distributions"].items()},
            user_attrs=dict(data["user_attrs"]), system_attrs=dict(data["system_attrs"]),
            intermediate_values={int(step): float(value) for step, value in data["intermediate_values"].items()},
            trial_id=int(data["trial_id"]))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ControllerError(f"a saved trial is malformed ({type(error).__name__}: {error})") from None


def new_trial(study: Any, decisions: Mapping[str, Any], fixed: Mapping[str, Any] | None = None) -> Any:
    """A new running trial of ``study`` with ``decisions`` (name -> categorical distribution)
    suggested: Optuna's ``Study.ask(decisions)`` without its queue of enqueued trials. ``fixed``
    (name -> value) are taken as they are instead of the sampler's, as for an enqueued trial.

    ``Study.ask`` first looks for a WAITING trial to run. Through Optuna's cache that re-reads
    every unfinished trial of the study with its parameters and attributes, about 12 ms an ask on
    SQLite with two trials running; and a fixed trial run through the queue would take the oldest
    waiting trial, which need not be its own (one left by a driver that died between enqueueing
    and asking). The rest is ``Study.ask``'s: the study's trial list, which samplers such as TPE
    read once per ask, is read afresh, the trial is created and each decision is suggested (by the
    study's sampler, unless fixed: the ``fixed_params`` system attribute, which Optuna's enqueued
    trials carry and its ``Trial`` reads). The decisions, and what the sampler records with them,
    are written in one transaction (:func:`controllers.optuna_rdb.params_in_one_transaction`)."""
    optuna = _optuna()
    study._thread_local.cached_all_trials = None  # as Study.ask: the sampler sees the trials of now
    trial_id = study._storage.create_new_trial(study._study_id)
    if fixed:
        study._storage.set_trial_system_attr(trial_id, "fixed_params", dict(fixed))
        trial = optuna.trial.Trial(study, trial_id)
    else:
        with created_trial_cached(study, trial_id):  # nothing written to it yet: not read back
            trial = optuna.trial.Trial(study, trial_id)
    with params_in_one_transaction(study):  # the trial's fixed parameters are written and read before
        for name, distribution in decisions.items():
            trial.suggest_categorical(name, distribution.choices)
    return trial


def finish_trial(study: Any, trial: Any, values: Sequence[float] | None,
                 user_attrs: Mapping[str, Any] | None = None) -> None:
    """Finish ``trial`` (an Optuna ``Trial`` of ``study``, still running): COMPLETE with
    ``values``, or FAIL when ``values`` is None, with ``user_attrs`` (JSON-serialisable) stored
    on it. ``Study.tell`` without its two reads of the trial.

    ``Study.tell`` reads the trial back from the storage before telling the sampler, and again
    after, to return it: on SQLite each read of a campaign's trial (42 parameters, about 30
    attributes) took 4-5 ms, half of a tell. The trial's own copy (``Trial._cached_frozen_trial``,
    which Optuna's ``Trial`` keeps up to date with what it suggests and sets) is what the sampler is
    told here, with ``user_attrs`` merged in as ``Trial.set_user_attr`` would. As in
    ``Study.tell``, the sampler hears first, and the record is written even if it raises: the
    attributes, state and values in one transaction (:func:`controllers.optuna_rdb.write_finished`).
    The values are the caller's checked floats (:func:`controllers.base.check_value`); that the
    trial is still running is checked by that write. Where Optuna's ``Trial`` has no such copy
    (another Optuna layout), this is ``Study.tell`` after the attributes."""
    optuna = _optuna()
    state = optuna.trial.TrialState.FAIL if values is None else optuna.trial.TrialState.COMPLETE
    told = None if values is None else list(values)
    attrs = dict(user_attrs or {})
    cached = getattr(trial, "_cached_frozen_trial", None)
    if cached is None:  # pragma: no cover - another Optuna layout
        write_user_attrs(study, trial._trial_id, attrs)
        study.tell(trial, told, state=state)
        return
    study._thread_local.cached_all_trials = None  # as Study.tell: the next ask reads the trials afresh
    cached.user_attrs.update(attrs)
    frozen = copy.copy(cached)
    frozen.state = state
    try:
        study.sampler.after_trial(study, frozen, state, told)
    finally:
        write_finished(study, trial._trial_id, state, told, attrs)


def distributions(space: SearchSpace) -> dict[str, Any]:
    """One Optuna categorical distribution per decision, in decision order."""
    optuna = _optuna()
    return {decision.name: optuna.distributions.CategoricalDistribution(decision.choices)
            for decision in space.decisions}


class OptunaController:
    """Ask/tell over an Optuna study whose sampler proposes the decisions."""

    def __init__(self, space: SearchSpace, sampler: Any, *, name: str, seed: int = 0,
                 directions: Sequence[str] = ("maximize",), storage: str | None = None,
                 study_name: str | None = None, load_if_exists: bool = True) -> None:
        optuna = _optuna()
        directions = tuple(directions) if not isinstance(directions, str) else (directions,)
        if not directions or any(direction not in DIRECTIONS for direction in directions):
            raise ControllerOptionError(name, "directions", list(directions),
                                        f"must be a non-empty list of {list(DIRECTIONS)}")
        if storage is not None and not isinstance(storage, str):
            raise ControllerOptionError(name, "storage", storage, "must be an Optuna storage URL or None")
        self.name = name
        self.space = space
        self.seed = seed
        self.directions = directions
        self.storage = storage
        self.study = optuna.create_study(storage=storage, sampler=sampler, study_name=study_name,
                                         directions=list(directions), load_if_exists=load_if_exists)
        if tuple(d.name.lower() for d in self.study.directions) != directions:
            found = [d.name.lower() for d in self.study.directions]
            raise ControllerError(f"study {self.study.study_name!r} in {storage} optimises {found}, "
                                  f"not {list(directions)}")
        fast_trial_reads(self.study)
        self._distributions = distributions(space)
        self._pending: dict[int, Any] = {}
        self._settled_elsewhere: list[int] = []  # pending at the save, finished before a restore

    @property
    def sampler(self) -> Any:
        return self.study.sampler

    def ask(self) -> Trial:
        return self._ask()

    def _ask(self, fixed: Mapping[str, Any] | None = None) -> Trial:
        trial = new_trial(self.study, self._distributions, fixed)
        self._pending[trial.number] = trial
        params = trial.params  # a deep copy on every read: read once
        return Trial(trial.number, {name: params[name] for name in self._distributions})

    def tell(self, trial: Trial | int, value: Value, *, user_attrs: Mapping[str, Any] | None = None) -> None:
        """Finish a trial. ``user_attrs`` (JSON-serialisable) are stored on the Optuna trial."""
        number = trial_number(trial)
        if number not in self._pending:
            raise UnknownTrialError(f"controller {self.name!r}: trial {number} was not asked or was already told")
        checked = check_value(self.name, value, self.directions)
        study_trial = self._pending.pop(number)
        attrs = dict(user_attrs or {})
        if isinstance(checked, Failed):
            attrs["failure"] = checked.reason
        finish_trial(self.study, study_trial, None if isinstance(checked, Failed) else checked, attrs)

    def _write_attrs(self, study_trial: Any, attrs: Mapping[str, Any]) -> None:
        """Store ``attrs`` on the running trial, and on the trial's own copy (what the sampler is
        told at the end: :func:`finish_trial`), as Optuna's ``Trial.set_user_attr`` does."""
        write_user_attrs(self.study, study_trial._trial_id, attrs)
        cached = getattr(study_trial, "_cached_frozen_trial", None)
        if cached is not None:
            cached.user_attrs.update(attrs)

    # ----- state ------------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {"name": self.name, "space": self.space.config(), "seed": self.seed,
                "directions": list(self.directions)}

    def _in_memory(self) -> bool:
        return self.storage is None

    def state_dict(self) -> dict[str, Any]:
        """The sampler (with its random state), the pending trial numbers and, for an
        in-memory study, its trials (a persistent storage keeps those itself)."""
        sampler = self.study.sampler
        saved_sampler = (("state", sampler.state_dict()) if hasattr(sampler, "state_dict")
                         else ("random_states", random_states(sampler)))
        if self._in_memory():
            trials = self.study.get_trials(deepcopy=True)
            count, saved_trials = len(trials), [trial_data(trial) for trial in trials]
        else:  # a persistent storage keeps its own trials
            count, saved_trials = count_trials(self.study), None
        return {"format": FORMAT, **self._config(), "sampler": saved_sampler,
                "pending": sorted(self._pending), "trial_count": count, "trials": saved_trials}

    def load_state_dict(self, state: Mapping[str, Any], *, allow_later_trials: bool = False) -> None:
        """Restore a saved state. ``allow_later_trials`` accepts a study that gained trials after
        the save (a driver that died after asking): the caller settles those trials."""
        optuna = _optuna()
        check_state(self.name, state, FORMAT, self._config())
        if state["trials"] is not None:
            if self.study.get_trials(deepcopy=False):
                raise ControllerError(f"controller {self.name!r}: restore an in-memory state into a fresh controller")
            self.study.add_trials([frozen_trial(data) for data in state["trials"]])
        trials = self.study.get_trials(deepcopy=False)
        if len(trials) < state["trial_count"] or (len(trials) != state["trial_count"] and not allow_later_trials):
            raise ControllerError(f"controller {self.name!r}: the study holds {len(trials)} trials but the state "
                                  f"was saved with {state['trial_count']}; restore the state saved with the study")
        kind, saved = state["sampler"]
        if kind == "state":
            self.study.sampler.load_state_dict(saved)
        elif kind == "random_states":
            restore_random_states(self.study.sampler, saved)
        else:
            raise ControllerError(f"controller {self.name!r}: unknown sampler state kind {kind!r}")
        by_number = {trial.number: trial for trial in trials}
        self._pending = {}
        self._settled_elsewhere = []
        for number in state["pending"]:
            frozen = by_number.get(number)
            if frozen is None:
                continue
            if frozen.state != optuna.trial.TrialState.RUNNING:
                self._settled_elsewhere.append(number)  # finished after the save: see replay()
                continue
            self._pending[number] = optuna.trial.Trial(self.study, frozen._trial_id)

    # ----- what a campaign driver needs beyond ask/tell ---------------------------------------------

    def pending_numbers(self) -> list[int]:
        """Trials asked and not yet told, plus those the study finished after the last saved state."""
        return sorted(list(self._pending) + self._settled_elsewhere)

    def replay(self, frozen_trial: Any) -> None:
        """Tell the sampler about a trial the study finished after the saved state was taken (a
        driver that died between telling the study and saving the controller)."""
        optuna = _optuna()
        if frozen_trial.number not in self._settled_elsewhere:
            raise UnknownTrialError(f"controller {self.name!r}: trial {frozen_trial.number} needs no replay")
        self._settled_elsewhere.remove(frozen_trial.number)
        values = frozen_trial.values if frozen_trial.state == optuna.trial.TrialState.COMPLETE else None
        self.study.sampler.after_trial(self.study, frozen_trial, frozen_trial.state, values)

    def ask_fixed(self, decisions: Mapping[str, Any]) -> Trial:
        """A trial with fixed decisions (e.g. a re-run): recorded in the study, proposed by nobody,
        so the RL and evolution samplers are not told its result."""
        return self._ask(fixed=decisions)

    def set_user_attrs(self, trial: Trial | int, attrs: Mapping[str, Any]) -> None:
        """Store attributes on a trial that is still running (visible if the driver dies)."""
        number = trial_number(trial)
        if number not in self._pending:
            raise UnknownTrialError(f"controller {self.name!r}: trial {number} is not running")
        self._write_attrs(self._pending[number], attrs)


def _sampler_options(name: str, sampler_type: type, options: Mapping[str, Any],
                     ours: tuple[str, ...] = ()) -> dict[str, Any]:
    """``options`` checked against ``sampler_type``'s parameters (``ours``: options the controller
    takes itself, named in the error too)."""
    accepted = (set(inspect.signature(sampler_type).parameters) - {"seed"}) | set(ours)
    for option in options:
        if option not in accepted:
            raise ControllerOptionError(name, option, options[option],
                                        f"unknown option; known: {sorted(accepted | set(STUDY_OPTIONS))}")
    return dict(options)


STUDY_OPTIONS = ("storage", "study_name", "load_if_exists", "directions")


def _split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    study = {key: value for key, value in options.items() if key in STUDY_OPTIONS}
    rest = {key: value for key, value in options.items() if key not in STUDY_OPTIONS}
    return study, rest


TPE_HISTORY = 500
TPE_BEST = 25  # Optuna's default gamma: TPE's "good" group holds at most 25 trials for one objective


class _RecentTrials:
    """A study as TPE reads it (see :func:`make_tpe`): every attribute is the study's, except its
    trials, which are ``trials`` (the history TPE conditions on)."""

    def __init__(self, study: Any, trials: list[Any]) -> None:
        self._study = study
        self._trials = trials
        self._by_states: dict[Any, list[Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[Any]:
        key = None if states is None else tuple(states)
        if key not in self._by_states:
            self._by_states[key] = [t for t in self._trials if key is None or t.state in key]
        return list(self._by_states[key])  # TPE reads, never changes, the trials it is given


def recent_history(trials: list[Any], history: int, maximize: bool, older: "OlderBest | None" = None) -> list[Any]:
    """The last ``history`` of ``trials`` (in number order) plus the :data:`TPE_BEST` best
    complete ones before them, in number order. ``older`` (for ``maximize``) keeps the best
    before them from one call to the next, for a list that only grows."""
    if len(trials) <= history:
        return trials
    recent = trials[-history:]
    return (older or OlderBest(maximize)).below(trials, recent[0].number) + recent


def _number(trial: Any) -> int:
    return int(trial.number)


class OlderBest:
    """The :data:`TPE_BEST` best complete trials numbered below a boundary that moves up, kept
    as it moves: each call reads the trials that crossed the boundary since the last, and those
    that were still running when they crossed, not every trial below it (at 8,000 trials that
    was 2.4 ms an ask, and growing). Best is the highest first value (the lowest where not
    ``maximize``), the earlier trial first among equals; the result is in number order. A list
    that gained trials below the boundary (another driver's, read late), or a boundary that moved
    down, is read afresh."""

    def __init__(self, maximize: bool) -> None:
        self.maximize = maximize
        self._forget()

    def _forget(self) -> None:
        self.boundary = 0  # the trials numbered below it have been read
        self.read = 0  # how many trials of the list were below it
        self.best: list[tuple[float, int, Any]] = []  # (order key, number, trial), best first
        self.running: list[int] = []  # numbers below the boundary not finished when read

    def below(self, trials: list[Any], boundary: int) -> list[Any]:
        """The best complete trials of ``trials`` (in number order) numbered below ``boundary``."""
        start = bisect.bisect_left(trials, self.boundary, key=_number)
        if boundary < self.boundary or start != self.read:
            self._forget()
            start = 0
        end = bisect.bisect_left(trials, boundary, key=_number)
        fresh = trials[start:end]
        for number in self.running:
            at = bisect.bisect_left(trials, number, key=_number)
            fresh.append(trials[at])  # still there: trials are never removed, and this one was read
        self.running = []
        candidates = []
        for trial in fresh:
            if trial.state.name == "COMPLETE":
                value = float(trial.values[0])
                candidates.append((-value if self.maximize else value, trial.number, trial))
            elif not trial.state.is_finished():
                self.running.append(trial.number)
        self.best = heapq.nsmallest(TPE_BEST, self.best + candidates, key=lambda entry: entry[:2])
        self.boundary, self.read = boundary, end
        return sorted((entry[2] for entry in self.best), key=_number)


@functools.lru_cache(maxsize=1)
def _parzen_estimator_type() -> type | None:
    """Optuna's TPE Parzen estimator with a faster log density over categorical decisions (see
    ``log_pdf``), or None where Optuna's private layout differs (its own is used then). Optuna
    names the estimator class a sampler uses (``TPESampler._parzen_estimator_cls``) as the place
    to customise it."""
    try:  # private to Optuna's TPE; imported only here
        from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
        from optuna.samplers._tpe.probability_distributions import _BatchedCategoricalDistributions
    except ImportError:  # pragma: no cover - another Optuna layout
        return None

    class CategoricalParzenEstimator(_ParzenEstimator):  # type: ignore[misc]
        def log_pdf(self, samples_dict: dict[str, Any]) -> Any:
            """The mixture's log density at each sample. Where every decision is categorical, each
            decision's weights (components x choices) are turned into logarithms once and picked
            per sample, where Optuna's takes the logarithm of the weights picked (samples x
            components, with 24 samples and a few choices 4 to 8 times as many logarithms): 5 ms an
            ask of the 42 decisions at 500 trials. The same numbers are added in the same order,
            so the result is Optuna's to the bit (tested)."""
            mixture = getattr(self, "_mixture_distribution", None)
            if mixture is None or not all(isinstance(d, _BatchedCategoricalDistributions)
                                          for d in mixture.distributions):
                return np.asarray(super().log_pdf(samples_dict))
            chosen = self._transform(samples_dict).astype(np.int64)  # samples x decisions: choice indices
            with np.errstate(divide="ignore"):  # a zero weight is a density of zero (log -inf)
                summed = np.zeros((len(chosen), len(mixture.weights)), dtype=np.float64)
                for column, distribution in enumerate(mixture.distributions):
                    summed += np.log(distribution.weights)[:, chosen[:, column]].T
                summed += np.log(mixture.weights)[np.newaxis]
                peak = summed.max(axis=1)
                peak[np.isneginf(peak)] = 0  # every component at zero: no inf - inf
                return np.asarray(np.log(np.exp(summed - peak[:, None]).sum(axis=1)) + peak)

    return CategoricalParzenEstimator


@functools.lru_cache(maxsize=1)
def _tpe_sampler_type() -> type:
    """Optuna's ``TPESampler`` conditioned on a bounded history: built on first use (Optuna is
    imported lazily)."""

    class RecentTPESampler(_optuna().samplers.TPESampler):  # type: ignore[misc]
        """TPE over the ``history`` most recent trials and the best before them."""

        def __init__(self, *, history: int | None = TPE_HISTORY, **options: Any) -> None:
            super().__init__(**options)
            estimator = _parzen_estimator_type()
            if estimator is not None and hasattr(self, "_parzen_estimator_cls"):
                self._parzen_estimator_cls = estimator
            self._history = history
            self._rows: dict[int, tuple[float, ...] | None] = {}  # finished trial id -> internal values
            self._rows_of: tuple[str, ...] = ()  # the search space those rows are in
            self._older: OlderBest | None = None  # the best trials before the recent ones, kept

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            trials = study._get_trials(deepcopy=False, states=None, use_cache=True)  # in number order
            at = bisect.bisect_left(trials, trial.number, key=_number)
            if at < len(trials) and trials[at].number == trial.number:  # the trial being sampled is no part of it
                trials = trials[:at] + trials[at + 1:]
            if self._history is None or len(study.directions) != 1:
                return dict(super().sample_relative(study, trial, search_space))
            maximize = study.direction.name == "MAXIMIZE"
            if self._older is None or self._older.maximize != maximize:
                self._older = OlderBest(maximize)
            # Up to ``history`` trials, all of them; TPE is given them even so, or it would read them again.
            window = recent_history(trials, self._history, maximize, self._older)
            kept = {t._trial_id for t in window}
            self._rows = {key: row for key, row in self._rows.items() if key in kept}  # bounded by the window
            return dict(super().sample_relative(_RecentTrials(study, window), trial, search_space))

        def _get_internal_repr(self, trials: list[Any], search_space: dict[str, Any],
                               study: Any) -> dict[str, Any]:
            """Optuna's ``TPESampler._get_internal_repr`` (each trial's decisions as the numbers
            the Parzen estimators take), with a finished trial's numbers kept from the ask before:
            they cannot change, and turning 42 decisions of every trial in the window into them
            twice an ask was a sixth of an ask. Trials without every decision are left out, as there."""
            names = tuple(search_space)
            if names != self._rows_of:
                self._rows, self._rows_of = {}, names
            rows = []
            for trial in trials:
                key = trial._trial_id if trial.state.is_finished() else None  # None: never kept
                if key in self._rows:
                    row = self._rows[key]
                else:
                    params = self._get_params(trial, study)
                    row = (tuple(search_space[name].to_internal_repr(params[name]) for name in names)
                           if search_space.keys() <= params.keys() else None)
                    if key is not None:
                        self._rows[key] = row
                if row is not None:
                    rows.append(row)
            columns = zip(*rows) if rows else ([] for _ in names)  # one column of values per decision
            return {name: np.asarray(column) for name, column in zip(names, columns)}

    return RecentTPESampler


def make_tpe(space: SearchSpace, seed: int = 0, **options: Any) -> OptunaController:
    """Optuna's TPE (single objective by default; ``directions`` may name several), conditioned
    on the ``history`` (default :data:`TPE_HISTORY`) most recent trials plus the 25 best before
    them; ``history: null`` conditions on every trial, as Optuna's own TPE does.

    Optuna's TPE reads every finished trial's 42 decisions at each ask, so an ask costs time in
    proportion to the trials so far (in memory: 12 ms at 100 trials, 44 ms at 1,000, about 290 ms
    extrapolated to MnasNet's 8,000), and a search's total in their square. TPE's "good" group
    holds at most the 25 best trials for one objective, and its weights already give old trials of
    the rest little say; with the best 25 always kept, a window only forgets old poor trials, and
    up to ``history`` trials the proposals are Optuna's exactly. Multi-objective studies, and the
    independent TPE (``multivariate: false``), read every trial.

    The default, 500, was chosen by ``python -m bench.controllers --seeds 6 --checkpoints
    300,1000,1500 --controllers "tpe:history=300;tpe:history=500;tpe:history=1000;random"``
    (2026-12-06, the surrogate objective): the median best reward after 1,500 trials was 0.8109,
    0.8109 and 0.8110 (random 0.7850), the mean over seeds 0.8108, 0.8111 and 0.8116 (a spread
    within the seeds' noise), and the searches took 163, 196 and 259 s in all."""
    optuna = _optuna()
    study, rest = _split(options)
    rest = _sampler_options("tpe", optuna.samplers.TPESampler, rest, ours=("history",))
    given = "history" in rest
    history = rest.pop("history", TPE_HISTORY)
    if rest.get("multivariate") is False:  # the independent TPE: every trial, for each decision
        if given and history is not None:
            raise ControllerOptionError("tpe", "history", history, "applies to the multivariate TPE (the "
                                        "default); with multivariate: false set history: null")
        history = None
    if history is not None and not (is_int(history) and history >= 1):
        raise ControllerOptionError("tpe", "history", history, "must be a positive number of trials, or null for all")
    sampler = _tpe_sampler_type()(seed=seed, history=history, **rest)
    return OptunaController(space, sampler, name="tpe", seed=seed, **study)


def make_nsga2(space: SearchSpace, seed: int = 0, **options: Any) -> OptunaController:
    """Optuna's NSGA-II; by default two objectives: accuracy (maximised), latency (minimised)."""
    optuna = _optuna()
    study, rest = _split(options)
    study.setdefault("directions", ("maximize", "minimize"))
    sampler = optuna.samplers.NSGAIISampler(seed=seed, **_sampler_options("nsga2", optuna.samplers.NSGAIISampler,
                                                                            rest))
    return OptunaController(space, sampler, name="nsga2", seed=seed, **study)


def make_random(space: SearchSpace, seed: int = 0, **options: Any) -> OptunaController:
    """Uniform random proposals (Optuna's RandomSampler)."""
    optuna = _optuna()
    study, rest = _split(options)
    sampler = optuna.samplers.RandomSampler(seed=seed, **_sampler_options("random", optuna.samplers.RandomSampler,
                                                                           rest))
    return OptunaController(space, sampler, name="random", seed=seed, **study)


__all__ = ["OptunaController", "make_tpe", "make_nsga2", "make_random", "distributions"]
