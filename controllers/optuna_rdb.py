"""Faster paths through Optuna's RDB storage (SQLite, PostgreSQL) for what a campaign does per trial.

Optuna's RDB storage goes through SQLAlchemy's ORM and commits every write on its own: a trial's
42 parameters were 42 commits, its 30 attributes 30 more, and each read of a trial built ORM
objects for its 72 rows. A campaign at MnasNet's scale (about 8,000 trials) pays that on every
trial, so these helpers do the same work with SQLAlchemy Core statements, compiled once and run
over the rows, in one transaction each:

- :func:`write_user_attrs`, :func:`write_study_system_attr`: attribute upserts;
- :func:`write_finished`: a tell's attributes, state and values;
- :func:`params_in_one_transaction`: the parameters of an ask, with what the sampler records;
- :func:`created_trial_cached`: a trial just created, not read back;
- :func:`count_trials`: one ``COUNT``;
- :func:`fast_trial_reads`: the storage's trial readers (one trial, or the study's new and
  unfinished trials, what Optuna's cache asks for before every sample) replaced by Core reads,
  and the cache's list of a study's trials kept in number order as trials arrive instead of
  sorted on every read (:class:`OrderedTrials`).

They reach into Optuna's private RDB layout (its table models and session helper, present since
Optuna 3, and its cache's records), checked on use: where it is missing, or on any other
storage, Optuna's own public and slower way is taken. The tests hold each against Optuna's own
path on SQLite and PostgreSQL.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import functools
import json
import sqlite3
from typing import Any, Iterator, Mapping, Sequence


def _rdb(study: Any) -> tuple[Any, Any, Any] | None:
    """``(backend, models, session)`` for a study on Optuna's RDB storage (SQLite, PostgreSQL):
    the storage behind Optuna's cache, its table models, and ``session()``, its scoped session as
    a context manager that commits at the end (and rolls back on any error, an integrity error
    included). None on any other storage, or where Optuna's private RDB
    layout (present since Optuna 3) is missing: the callers then take Optuna's public, slower way."""
    from optuna.storages import RDBStorage  # heavy: the caller's study has loaded optuna already

    backend = getattr(study._storage, "_backend", study._storage)  # the RDB storage behind Optuna's cache
    if not isinstance(backend, RDBStorage):
        return None
    try:  # private to Optuna's RDB storage, and imported only on that path
        from optuna.storages._rdb import models  # heavy: SQLAlchemy's ORM models of Optuna's tables
        from optuna.storages._rdb.storage import _create_scoped_session  # heavy: same module family
    except ImportError:  # pragma: no cover - another Optuna layout
        return None
    return backend, models, lambda: _create_scoped_session(backend.scoped_session)


def write_user_attrs(study: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Store ``attrs`` (JSON-serialisable) on a running trial of ``study``: in one transaction on
    Optuna's RDB storage (SQLite, PostgreSQL), one at a time on any other storage.

    Optuna commits each user attribute on its own; a campaign stores about 30 per trial, and each
    commit costs a few milliseconds on SQLite. One transaction also makes a trial's record
    all-or-nothing. On SQLite and PostgreSQL the record is one upsert (:func:`_attr_upsert`) after
    one check that the trial is still running (Optuna's own writer looks the trial up again for
    every attribute); other engines use Optuna's attribute writer inside the one transaction. The
    upsert's statement is built once, so its compiled form is reused: a statement with the rows in
    its VALUES clause is compiled afresh for every record, and took 3.4 ms where this takes 0.6
    for 30 attributes on SQLite."""
    if not attrs:
        return
    rdb = _rdb(study)
    if rdb is None:
        for key, value in attrs.items():
            study._storage.set_trial_user_attr(trial_id, key, value)
        return
    backend, models, session_of = rdb
    with session_of() as session:
        _write_trial_attrs(backend, models, session, models.TrialUserAttributeModel, trial_id, attrs)


def _write_trial_attrs(backend: Any, models: Any, session: Any, table: Any, trial_id: int,
                       attrs: Mapping[str, Any], checked: bool = False) -> None:
    """Write ``attrs`` into the trial attribute ``table`` (user or system) in ``session``, after
    Optuna's check that the trial is still running (``checked``: the caller has made it): one
    upsert on SQLite and PostgreSQL, Optuna's per-attribute writer on other engines."""
    engine = backend.engine.name
    if _attr_upsert(engine, table.__table__, "trial_id") is None:
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(session, table, trial_id, key, value)
        return
    if not checked:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        backend.check_trial_is_updatable(trial_id, trial.state)
    _execute_upsert(session, engine, table.__table__, "trial_id", trial_id, attrs)


def write_study_system_attr(study: Any, key: str, value: Any) -> None:
    """Optuna's ``set_study_system_attr`` as one compiled upsert on SQLite and PostgreSQL (a
    campaign records its controller state's digest after every tell: Optuna's writer looks the
    study and the attribute up through the ORM first, about 2.4 ms a write on SQLite against
    under 1 ms); Optuna's own writer elsewhere."""
    rdb = _rdb(study)
    table = None if rdb is None else rdb[1].StudySystemAttributeModel.__table__
    if rdb is None or _attr_upsert(rdb[0].engine.name, table, "study_id") is None:
        study._storage.set_study_system_attr(study._study_id, key, value)
        return
    backend, _, session_of = rdb
    with session_of() as session:
        _execute_upsert(session, backend.engine.name, table, "study_id", study._study_id, {key: value})


@functools.lru_cache(maxsize=32)
def _attr_upsert(engine: str, table: Any, owner: str) -> Any:
    """The statement that inserts key/value rows of ``owner`` into the attribute ``table`` (unique
    on ``owner`` and ``key``), replacing the values of keys already there; None where the engine
    has no upsert. Built once per table: SQLAlchemy then reuses its compiled form.

    On PostgreSQL the rows go as two arrays in one statement (``unnest``): psycopg2 runs a
    statement over many rows as one round trip to the server per row. On SQLite, in the
    process, it is SQLAlchemy's upsert run over the rows."""
    if engine == "postgresql":
        from sqlalchemy import text  # heavy: SQLAlchemy, already loaded by Optuna's storage

        return text(f"INSERT INTO {table.name} ({owner}, key, value_json) SELECT :owner, given.key, given.value_json "
                    "FROM unnest(CAST(:keys AS VARCHAR[]), CAST(:values AS TEXT[])) AS given(key, value_json) "
                    f"ON CONFLICT ({owner}, key) DO UPDATE SET value_json = excluded.value_json")
    upsert = _multi_row_upsert(engine)
    if upsert is None:
        return None
    statement = upsert(table)
    return statement.on_conflict_do_update(index_elements=[owner, "key"],
                                           set_={"value_json": statement.excluded.value_json})


def _execute_upsert(session: Any, engine: str, table: Any, owner: str, owner_id: int, attrs: Mapping[str, Any]) -> None:
    """Upsert ``attrs`` (JSON-serialisable values) of ``owner_id`` into the attribute ``table``
    with :func:`_attr_upsert`'s statement."""
    statement = _attr_upsert(engine, table, owner)
    if engine == "postgresql":
        session.execute(statement, {"owner": owner_id, "keys": list(attrs),
                                    "values": [json.dumps(value) for value in attrs.values()]})
    else:
        session.execute(statement, [{owner: owner_id, "key": key, "value_json": json.dumps(value)}
                                    for key, value in attrs.items()])


def write_finished(study: Any, trial_id: int, state: Any, values: Sequence[float] | None,
                   attrs: Mapping[str, Any]) -> None:
    """Finish a running trial of ``study``: its user ``attrs``, ``state`` (COMPLETE or FAIL) and
    ``values`` (None for a failure) in one transaction on SQLite and PostgreSQL; elsewhere
    Optuna's writers, the attributes first. ``RuntimeError`` (Optuna's ``UpdateFinishedTrialError``)
    if the trial has finished already, and nothing is written.

    Optuna's ``set_trial_state_values`` looks each value up through the ORM before writing it,
    and the attributes went in a transaction of their own: on PostgreSQL, 4 statements and a
    commit more a tell than here. The trial's row is changed through Optuna's ORM model as there
    (its times are stored in UTC through the model), the values and attributes by one upsert each."""
    rdb = _rdb(study)
    statement = None if rdb is None else _value_upsert(rdb[0].engine.name, rdb[1].TrialValueModel.__table__)
    if rdb is None or statement is None:  # no upsert on this engine (nor for the attributes)
        write_user_attrs(study, trial_id, attrs)
        study._storage.set_trial_state_values(trial_id, state, values)
        return
    backend, models, session_of = rdb
    with session_of() as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        backend.check_trial_is_updatable(trial_id, trial.state)
        if attrs:
            _write_trial_attrs(backend, models, session, models.TrialUserAttributeModel, trial_id, attrs, checked=True)
        if values is not None:
            rows = []
            for objective, value in enumerate(values):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                rows.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
            session.execute(statement, rows)
        trial.state = state
        trial.datetime_complete = datetime.datetime.now()  # local time, stored in UTC by the model, as Optuna's


@functools.lru_cache(maxsize=8)
def _value_upsert(engine: str, table: Any) -> Any:
    """The statement that writes a trial's objective values into Optuna's ``table`` of them
    (unique on trial and objective), replacing those already there; None where the engine has
    no upsert. Built once per table, as :func:`_attr_upsert`."""
    upsert = _multi_row_upsert(engine)
    if upsert is None:
        return None
    statement = upsert(table)
    return statement.on_conflict_do_update(index_elements=["trial_id", "objective"],
                                           set_={"value": statement.excluded.value,
                                                 "value_type": statement.excluded.value_type})


def count_trials(study: Any) -> int:
    """How many trials ``study`` holds, in any state: one ``COUNT`` query on Optuna's RDB storage,
    ``len(get_trials())`` elsewhere.

    A campaign saves its controller after every trial with this count in the state. Through
    Optuna's cache, counting first re-reads every unfinished trial with its parameters and
    attributes (about 10 ms a save on SQLite at 400 trials, more as trials pile up)."""
    rdb = _rdb(study)
    if rdb is None:
        return len(study.get_trials(deepcopy=False))
    from sqlalchemy import func  # heavy: SQLAlchemy, loaded with Optuna's storage already

    _, models, session_of = rdb
    with session_of() as session:
        return int(session.query(func.count(models.TrialModel.trial_id))
                   .filter(models.TrialModel.study_id == study._study_id).scalar())


def _multi_row_upsert(engine: str) -> Any:
    """SQLAlchemy's ``insert`` with ``on_conflict_do_update`` for ``engine`` (SQLite 3.24 or
    newer, PostgreSQL), or None where the dialect has none."""
    if engine == "postgresql":
        from sqlalchemy.dialects import postgresql  # heavy: SQLAlchemy, already loaded by Optuna's storage

        return postgresql.insert
    if engine == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects import sqlite  # heavy: as above

        return sqlite.insert
    return None


@contextlib.contextmanager
def params_in_one_transaction(study: Any) -> Iterator[None]:
    """Inside the block, the parameters and trial system attributes Optuna writes for ``study``'s
    trials are held, and written in one transaction when the block ends (also when it raises); on
    storages other than Optuna's RDB storage nothing changes.

    Optuna commits each suggested parameter on its own; asking a campaign's 42 decisions cost 42
    commits. Its TPE also records the decisions it sampled as a system attribute of the trial
    (for other processes' samplers, with its ``constant_liar``, the default since Optuna 5), one
    more commit through the ORM: 2 ms an ask on SQLite. Like :func:`write_user_attrs` this reaches
    into Optuna's RDB storage (its per-parameter and system-attribute writers, shadowed on the
    instance for the block, and its session helper); if those are missing the writes go one by
    one. The values are checked as before, at the end instead of each one as it is written, and
    another process sees a trial's parameters and attributes together. What the block writes is
    not read back inside it (a trial's fixed parameters, for one, are set before it). Meant for
    one thread per storage object, as a campaign driver asks."""
    rdb = _rdb(study)
    if rdb is None or not all(callable(getattr(rdb[0], name, None))
                              for name in ("_set_trial_param", "set_trial_system_attr")):
        yield
        return
    backend, models, session_of = rdb
    held: list[tuple[Any, ...]] = []
    attrs: dict[int, dict[str, Any]] = {}  # trial id -> system attributes, in the order written
    backend._set_trial_param = lambda *args: held.append(args)  # shadows the committing writers
    backend.set_trial_system_attr = lambda trial_id, key, value: attrs.setdefault(trial_id, {}).__setitem__(key, value)
    try:
        yield
    finally:
        del backend._set_trial_param, backend.set_trial_system_attr
        if held or attrs:
            with session_of() as session:
                checked = _write_params(backend, models, session, held) if held else set()
                for trial_id, values in attrs.items():
                    _write_trial_attrs(backend, models, session, models.TrialSystemAttributeModel, trial_id, values,
                                       checked=trial_id in checked)


def _write_params(backend: Any, models: Any, session: Any, held: list[tuple[Any, ...]]) -> set[int]:
    """Write the parameters ``held`` (Optuna's ``_set_trial_param`` arguments: trial id, name,
    internal value, distribution, previous distribution or None) in ``session``, with Optuna's
    checks: the trial is still running, and each distribution agrees with the one the study
    already holds for that name. The trial is looked up once per trial, and the study's
    distribution once per name (Optuna's writer does both for every parameter, and each lookup
    flushes the rows added before it); the rows are inserted together, by one statement. Returns
    the ids of the trials checked."""
    from optuna import distributions as optuna_distributions  # heavy: loaded with optuna already
    from sqlalchemy import insert  # heavy: SQLAlchemy, loaded with Optuna's storage already

    trials: dict[int, Any] = {}
    known: dict[tuple[int, str], Any] = {}  # (study id, name) -> the distribution the study holds
    rows = []
    for trial_id, name, value, distribution, previous in held:
        if trial_id not in trials:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            backend.check_trial_is_updatable(trial_id, trial.state)
            trials[trial_id] = trial
        study_id = trials[trial_id].study_id
        if previous is None:
            if (study_id, name) not in known:
                record = (session.query(models.TrialParamModel.distribution_json)
                          .join(models.TrialModel).filter(models.TrialModel.study_id == study_id)
                          .filter(models.TrialParamModel.param_name == name).first())
                known[(study_id, name)] = (None if record is None
                                           else optuna_distributions.json_to_distribution(record[0]))
            previous = known[(study_id, name)]
        if previous is not None:
            optuna_distributions.check_distribution_compatibility(previous, distribution)
        else:
            known[(study_id, name)] = distribution  # later rows of this block are checked against it
        rows.append({"trial_id": trial_id, "param_name": name, "param_value": value,
                     "distribution_json": optuna_distributions.distribution_to_json(distribution)})
    session.execute(insert(models.TrialParamModel.__table__), rows)  # one compiled INSERT over the rows
    return set(trials)


def fast_trial_reads(study: Any) -> bool:
    """Replace the trial readers of ``study``'s RDB storage (its ``get_trial`` and the
    ``_get_trials`` behind Optuna's cache) with :class:`TrialReader`'s Core reads; False (nothing
    changed) on any other storage or Optuna layout.

    Through Optuna's cache, every ask of a sampler that reads the study (TPE, NSGA-II) first
    re-reads the trials still running and those finished since the last read; and every new
    ``Trial`` reads itself back. Optuna builds ORM objects for each row of those trials (42
    parameters, about 30 attributes, six queries): about 5 ms per trial on SQLite, a quarter of a
    TPE ask at 600 trials. Only this study's storage object is changed (each campaign controller
    opens its own)."""
    rdb = _rdb(study)
    if rdb is None or not callable(getattr(rdb[0], "_get_trials", None)):
        return False
    backend, models, session_of = rdb
    reader = TrialReader(models)

    def get_trials(study_id: int, states: Any, included_trial_ids: set[int], trial_id_greater_than: int) -> list[Any]:
        with session_of() as session:
            return reader.trials(session, study_id, states, included_trial_ids, trial_id_greater_than)

    def get_trial(trial_id: int) -> Any:
        with session_of() as session:
            return reader.trial(session, trial_id)

    backend._get_trials = get_trials
    backend.get_trial = get_trial
    if study._storage is not backend:
        OrderedTrials.install(study._storage)
    return True


@contextlib.contextmanager
def created_trial_cached(study: Any, created: int) -> Iterator[None]:
    """Inside the block, Optuna's cache of ``study``'s storage answers ``get_trial`` for the trial
    ``created`` (an id) from what it holds, although the trial is still running; other trials,
    and any trial elsewhere or where the cache's private layout is missing, are read as before.

    Optuna's ``Trial`` reads its trial back when it is made, and the cache reads a running trial
    from the database every time, since another process may have written to it since: six
    queries and a commit an ask (2.4 ms on PostgreSQL). A trial this driver has just created,
    before anything is written to it, is what the creation returned, which the cache holds. So
    the block is for making the ``Trial`` of a trial just created and not yet written to
    (:func:`controllers.optuna_study.new_trial`); the trial is a copy, as a read's is."""
    cache = study._storage
    if cache is getattr(cache, "_backend", cache) or not all(
            hasattr(cache, name) for name in ("_trial_id_to_study_id_and_number", "_studies", "_lock")):
        yield
        return
    read = cache.get_trial

    def get_trial(trial_id: int) -> Any:
        if trial_id == created:
            with cache._lock:
                place = cache._trial_id_to_study_id_and_number.get(trial_id)
                held = None if place is None else cache._studies[place[0]].trials.get(place[1])
                if held is not None:
                    return copy.deepcopy(held)
        return read(trial_id)

    cache.get_trial = get_trial
    try:
        yield
    finally:
        del cache.get_trial


class OrderedTrials:
    """One study's trials in Optuna's cache, in number order, kept so as they arrive.

    Optuna's cache (``_CachedStorage``) holds a study's trials in a dict by number and sorts them
    all on every ``get_all_trials``, which TPE's search-space inference and the ``tpe``
    controller's history call once an ask: 1.2 ms at 3,500 trials and growing with the trials.
    Trial numbers are 0, 1, 2... in a study, so the list here is indexed by number: a trial the
    cache adds replaces its entry or extends the list, in constant time. Where a number would
    leave a gap (another driver's trial this cache has not read yet) the list is rebuilt from the
    dict by sorting, as Optuna does, until the gap is filled. Equal to Optuna's reads (tested)."""

    def __init__(self) -> None:
        self.trials: list[Any] = []
        self.dense = False  # the list holds trial ``i`` at index ``i`` for every i; else rebuild on read

    def put(self, trial: Any) -> None:
        if not self.dense:
            return
        number = trial.number
        if number < len(self.trials):
            self.trials[number] = trial
        elif number == len(self.trials):
            self.trials.append(trial)
        else:
            self.dense = False

    def read(self, cached: Mapping[int, Any]) -> list[Any]:
        """The trials in number order (the list itself: the caller copies it); ``cached`` is the
        cache's dict of them, by number."""
        if not self.dense:
            self.trials = sorted(cached.values(), key=lambda trial: trial.number)
            self.dense = all(trial.number == index for index, trial in enumerate(self.trials))
        return self.trials

    @staticmethod
    def install(cache: Any) -> bool:
        """Keep each study's trials of Optuna's ``cache`` in order, and answer its
        ``get_all_trials`` from them (shadowed on the instance); False where the cache's private
        layout is missing (nothing changed)."""
        if not all(hasattr(cache, name) for name in ("_add_trials_to_cache", "_read_trials_from_remote_storage",
                                                      "_studies", "_lock")):
            return False
        views: dict[int, tuple[Any, OrderedTrials]] = {}  # study id -> (the cache's record of it, its view)
        add = cache._add_trials_to_cache

        def view_of(study_id: int) -> OrderedTrials:
            record = cache._studies[study_id]
            held = views.get(study_id)
            if held is None or held[0] is not record:  # new, or the study was deleted and its id reused
                held = views[study_id] = (record, OrderedTrials())
            return held[1]

        def add_trials(study_id: int, trials: list[Any]) -> None:
            add(study_id, trials)
            view = view_of(study_id)
            for trial in trials:
                view.put(trial)

        def get_all_trials(study_id: int, deepcopy: bool = True, states: Any = None) -> list[Any]:
            cache._read_trials_from_remote_storage(study_id)
            with cache._lock:
                ordered = view_of(study_id).read(cache._studies[study_id].trials)
                trials = list(ordered) if states is None else [trial for trial in ordered if trial.state in states]
            return copy.deepcopy(trials) if deepcopy else trials

        cache._add_trials_to_cache = add_trials
        cache.get_all_trials = get_all_trials
        return True


@functools.lru_cache(maxsize=4096)
def _distribution(text: str) -> Any:
    """The distribution stored as ``text`` (a campaign's trials share a few dozen; Optuna parses
    each parameter's afresh). Distributions are not changed by their readers."""
    from optuna.distributions import json_to_distribution  # heavy: loaded with optuna already

    return json_to_distribution(text)


def _local(utc: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive UTC time as Optuna's RDB storage returns it: naive local time."""
    if utc is None:
        return None
    return utc.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


class TrialReader:
    """Optuna's ``FrozenTrial`` records read with SQLAlchemy Core: one query per table, each
    restricted to the trials wanted by the same filter (no list of ids that can outgrow a
    database's limit on bound parameters), equal to Optuna's own reads (tested)."""

    def __init__(self, models: Any) -> None:
        self.models = models

    def trial(self, session: Any, trial_id: int) -> Any:
        """One trial by id (``KeyError`` if there is none, as Optuna's ``get_trial``)."""
        table = self.models.TrialModel.__table__
        found = self._read(session, table.c.trial_id == trial_id)
        if not found:
            raise KeyError(self.models.NOT_FOUND_MSG)
        return found[0]

    def trials(self, session: Any, study_id: int, states: Any, included_trial_ids: set[int],
               trial_id_greater_than: int) -> list[Any]:
        """Optuna's ``RDBStorage._get_trials``: the study's trials in ``states`` (all if None)
        whose id is greater than ``trial_id_greater_than`` or in ``included_trial_ids`` (those
        up to it), by id. A missing study is a ``KeyError``."""
        from sqlalchemy import and_, or_, select, true  # heavy: SQLAlchemy, loaded with Optuna's storage

        studies = self.models.StudyModel.__table__
        if session.execute(select(studies.c.study_id).where(studies.c.study_id == study_id)).first() is None:
            raise KeyError(self.models.NOT_FOUND_MSG)
        table = self.models.TrialModel.__table__
        included = sorted(trial_id for trial_id in included_trial_ids if trial_id <= trial_id_greater_than)
        if trial_id_greater_than > -1:
            newer = table.c.trial_id > trial_id_greater_than
            window = or_(table.c.trial_id.in_(included), newer) if included else newer
        else:
            window = true()
        state_filter = table.c.state.in_(list(states)) if states is not None else true()
        return self._read(session, and_(table.c.study_id == study_id, state_filter, window))

    def _read(self, session: Any, where: Any) -> list[Any]:
        from optuna.trial import FrozenTrial  # heavy: loaded with optuna already
        from sqlalchemy import select  # heavy: SQLAlchemy, loaded with Optuna's storage

        models = self.models
        table = models.TrialModel.__table__
        rows = session.execute(select(table.c.trial_id, table.c.number, table.c.state, table.c.datetime_start,
                                      table.c.datetime_complete).where(where).order_by(table.c.trial_id)).all()
        if not rows:
            return []
        wanted = select(table.c.trial_id).where(where).scalar_subquery()

        def children(model: Any, *columns: str) -> dict[int, list[Any]]:
            child = model.__table__
            found: dict[int, list[Any]] = {}
            query = (select(child.c.trial_id, *(child.c[name] for name in columns))
                     .where(child.c.trial_id.in_(wanted)).order_by(child.c.trial_id, child.primary_key.columns[0]))
            for trial_id, *values in session.execute(query):
                found.setdefault(trial_id, []).append(values)
            return found

        params = children(models.TrialParamModel, "param_name", "param_value", "distribution_json")
        values = children(models.TrialValueModel, "objective", "value", "value_type")
        user = children(models.TrialUserAttributeModel, "key", "value_json")
        system = children(models.TrialSystemAttributeModel, "key", "value_json")
        steps = children(models.TrialIntermediateValueModel, "step", "intermediate_value", "intermediate_value_type")
        to_value = models.TrialValueModel.stored_repr_to_value
        to_step = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
        trials = []
        for trial_id, number, state, start, complete in rows:
            told = values.get(trial_id)
            objectives: list[float] | None = None
            if told:
                objectives = [0.0] * len(told)
                for objective, value, value_type in told:
                    objectives[objective] = to_value(value, value_type)
            own = [(name, value, _distribution(text)) for name, value, text in params.get(trial_id, [])]
            trials.append(FrozenTrial(
                number=number, state=state, value=None, values=objectives, datetime_start=_local(start),
                datetime_complete=_local(complete),
                params={name: distribution.to_external_repr(value) for name, value, distribution in own},
                distributions={name: distribution for name, _, distribution in own},
                user_attrs={key: json.loads(text) for key, text in user.get(trial_id, [])},
                system_attrs={key: json.loads(text) for key, text in system.get(trial_id, [])},
                intermediate_values={step: to_step(value, kind) for step, value, kind in steps.get(trial_id, [])},
                trial_id=trial_id))
        return trials
