"""The storage contract: what a campaign needs from its Optuna storage, run over SQLite and a real
PostgreSQL server (Debian's ``postgresql``, which ``.ci/run`` installs).

Create and resume, driver heartbeats and stale-driver recovery, two drivers on one study and
concurrent tells, through the campaign's own study code (:mod:`nas.campaign.study`) and
controllers. SQLite alone: a corrupt or truncated ``study.db`` is a named error and is never
written. PostgreSQL alone: a server restart in the middle of ``nas search``.
"""
from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from controllers import Failed
from controllers.optuna_bridge import study_controller
from controllers.optuna_rdb import (
    OrderedTrials,
    count_trials,
    created_trial_cached,
    fast_trial_reads,
    params_in_one_transaction,
    write_study_system_attr,
    write_user_attrs,
)
from controllers.optuna_study import finish_trial
from nas.campaign.study import (
    HEARTBEAT_STALE_S,
    INTERRUPTED,
    CampaignError,
    CampaignStudy,
    check_sqlite_file,
    check_storage,
    wait_for_storage,
)
from search_spaces import get_space
from tests.support.campaign import tiny_config
from tests.support.cli import run_nas_here
from tests.support.postgres import PostgresServer, server_binaries

SPACE = ("mnasnet", {"width": 0.25, "resolution": 16, "num_classes": 10})


@pytest.fixture(scope="module")
def postgres_server():
    if server_binaries() is None:
        pytest.skip("PostgreSQL server is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2")
    folder = Path(tempfile.mkdtemp(prefix="nas-pg-"))  # not under tmp_path: 'postgres' must reach it
    folder.chmod(0o755)
    server = PostgresServer(folder / "server")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_server").url


def _controller(storage: str, study_name: str, name: str = "random", seed: int = 0):
    return study_controller(name, get_space(SPACE[0], **SPACE[1]), seed, storage=storage, study_name=study_name)


def _study(storage: str, name: str) -> str:
    """A fresh study name (the PostgreSQL database is shared by the module's tests)."""
    check_storage(storage)
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _ask(controller, driver: str) -> int:
    trial = controller.ask()
    controller.set_user_attrs(trial.number, {"driver": driver, "arch_id": f"arch{trial.number}"})
    return trial.number


def test_a_record_written_in_one_transaction_equals_one_written_attribute_by_attribute(storage) -> None:
    name = _study(storage, "attrs")
    study = optuna.create_study(storage=storage, study_name=name)
    record = {"accuracy": 0.5, "arch_id": "abc", "nested": {"a": [1, 2.5, None]}, "flag": False}
    at_once, one_by_one = study.ask(), study.ask()
    write_user_attrs(study, at_once._trial_id, record)
    for key, value in record.items():
        one_by_one.set_user_attr(key, value)
    write_user_attrs(study, at_once._trial_id, {"accuracy": 0.75})  # overwrites, keeps the rest
    one_by_one.set_user_attr("accuracy", 0.75)
    reread = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert reread[0].user_attrs == reread[1].user_attrs == {**record, "accuracy": 0.75}
    study.tell(at_once, 1.0)
    with pytest.raises(RuntimeError, match="finished"):  # Optuna's UpdateFinishedTrialError
        write_user_attrs(study, at_once._trial_id, {"late": 1})
    assert "late" not in optuna.load_study(study_name=name, storage=storage).trials[0].user_attrs


def test_a_study_attribute_written_by_one_upsert_equals_optunas(storage) -> None:
    name = _study(storage, "sysattr")
    study = optuna.create_study(storage=storage, study_name=name)
    study._storage.set_study_system_attr(study._study_id, "optuna", ["a", "b"])
    write_study_system_attr(study, "ours", ["a", "b"])
    write_study_system_attr(study, "ours", ["b", "c"])  # replaces the value
    study._storage.set_study_system_attr(study._study_id, "optuna", ["b", "c"])
    attrs = optuna.load_study(study_name=name, storage=storage)._storage.get_study_system_attrs(study._study_id)
    assert attrs["ours"] == attrs["optuna"] == ["b", "c"]


class _Recorder(optuna.samplers.RandomSampler):
    """A sampler that keeps what ``after_trial`` was told."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.told: list[tuple[int, dict, dict, str, list | None]] = []

    def after_trial(self, study, trial, state, values) -> None:
        self.told.append((trial.number, dict(trial.params), dict(trial.user_attrs), state.name, values))


def test_finishing_a_trial_tells_the_sampler_and_the_storage_what_study_tell_does(storage) -> None:
    recorders = {}
    for way in ("tell", "finish"):
        recorder = _Recorder()
        study = optuna.create_study(storage=storage, study_name=_study(storage, way), sampler=recorder,
                                    directions=["maximize"])
        for index, values in enumerate(([0.5], None, [float("-inf")])):
            trial = study.ask({"op": optuna.distributions.CategoricalDistribution(["a", "b"])})
            trial.set_user_attr("index", index)
            if way == "tell":
                trial.set_user_attr("told", [index, None])
                study.tell(trial, values, state=None if values else optuna.trial.TrialState.FAIL)
            else:
                finish_trial(study, trial, values, {"told": [index, None]})
        reread = optuna.load_study(study_name=study.study_name, storage=storage).get_trials(deepcopy=False)
        recorders[way] = (recorder.told, [(t.number, t.state.name, t.values, t.params, t.user_attrs) for t in reread])
    assert recorders["finish"] == recorders["tell"]
    assert [state for _, _, _, state, _ in recorders["finish"][0]] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert recorders["finish"][0][0][2] == {"index": 0, "told": [0, None]}  # the sampler saw the trial's attributes


def test_a_finished_trials_record_is_written_all_or_nothing(storage) -> None:
    study = optuna.create_study(storage=storage, study_name=_study(storage, "record"))
    trial = study.ask()
    with pytest.raises(TypeError):  # an attribute that is no JSON: nothing of the record is written
        finish_trial(study, trial, [1.0], {"fine": 1, "broken": object()})
    reread = optuna.load_study(study_name=study.study_name, storage=storage).trials[0]
    assert (reread.state.name, reread.values, reread.user_attrs) == ("RUNNING", None, {})
    finish_trial(study, trial, [2.0], {"fine": 1})
    reread = optuna.load_study(study_name=study.study_name, storage=storage).trials[0]
    assert (reread.state.name, reread.values, reread.user_attrs) == ("COMPLETE", [2.0], {"fine": 1})


def test_a_trial_finished_elsewhere_cannot_be_finished_again(storage) -> None:
    study = optuna.create_study(storage=storage, study_name=_study(storage, "twice"))
    trial = study.ask()
    other = optuna.load_study(study_name=study.study_name, storage=storage)
    other.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(RuntimeError, match="finished"):  # Optuna's UpdateFinishedTrialError
        finish_trial(study, trial, [1.0])
    assert optuna.load_study(study_name=study.study_name, storage=storage).trials[0].state.name == "FAIL"


def _fields(trials) -> list[dict[str, str]]:
    """Every field of each trial, as text (a NaN equals a NaN), with its type."""
    return [{key: f"{type(value).__name__}:{value!r}" for key, value in vars(trial).items()} for trial in trials]


def test_trials_read_through_core_equal_optunas_own_reads(storage) -> None:
    name = _study(storage, "reads")
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    space = {"op": optuna.distributions.CategoricalDistribution(["mbconv", None, 3]),
             "ratio": optuna.distributions.FloatDistribution(0.0, 1.0),
             "layers": optuna.distributions.IntDistribution(1, 4)}
    for index in range(6):
        trial = study.ask(space)
        trial.set_user_attr("arch", {"index": index, "nested": [1.5, None]})
        study._storage.set_trial_system_attr(trial._trial_id, "mark", [index])
        for step, value in enumerate((0.5, float("inf"), float("nan"), -float("inf"))[:index]):
            study._storage.set_trial_intermediate_value(trial._trial_id, step, value)
        if index % 3 == 0:
            study.tell(trial, [0.25 * index, float("inf") if index == 3 else 1.0])
        elif index % 3 == 1:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        # index % 3 == 2 stays RUNNING
    ours = optuna.load_study(study_name=name, storage=storage)
    assert fast_trial_reads(ours)
    plain = optuna.storages.get_storage(storage)
    backend = ours._storage._backend
    reference = getattr(plain, "_backend", plain)
    study_id = study._study_id
    ids = [t._trial_id for t in plain.get_all_trials(study_id)]
    running_or_failed = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL)
    for states, included, greater in [(None, set(), -1), (None, {ids[2]}, ids[3]), (None, {ids[2], ids[5]}, ids[5]),
                                      ((optuna.trial.TrialState.COMPLETE,), set(), -1),
                                      (running_or_failed, {ids[1]}, ids[2])]:
        assert _fields(backend._get_trials(study_id, states, included, greater)) == _fields(
            reference._get_trials(study_id, states, included, greater))
    for trial_id in ids:
        assert _fields([backend.get_trial(trial_id)]) == _fields([reference.get_trial(trial_id)])
    assert _fields(ours.get_trials()) == _fields(optuna.load_study(study_name=name, storage=storage).get_trials())
    assert len(ids) == 6
    with pytest.raises(KeyError):
        backend.get_trial(max(ids) + 1000)
    with pytest.raises(KeyError):
        backend._get_trials(study_id + 1000, None, set(), -1)


def test_parameters_asked_in_one_transaction_equal_those_asked_one_by_one(storage) -> None:
    name = _study(storage, "params")
    study = optuna.create_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=0))
    space = {"op": optuna.distributions.CategoricalDistribution(["mbconv", "sepconv"]),
             "kernel": optuna.distributions.CategoricalDistribution([3, 5, 7]),
             "ratio": optuna.distributions.FloatDistribution(0.0, 1.0)}
    fixed = {"op": "sepconv", "kernel": 7, "ratio": 0.25}
    for _ in range(3):
        study.enqueue_trial(fixed)
    with params_in_one_transaction(study):
        held = study.ask(space)
    plain = study.ask(space)
    assert held.params == plain.params == fixed
    with pytest.raises(KeyError), params_in_one_transaction(study):  # what was asked before a raise is kept
        study.ask(space)
        raise KeyError("after the ask")
    backend = getattr(study._storage, "_backend", study._storage)
    assert "_set_trial_param" not in vars(backend) and "set_trial_system_attr" not in vars(backend)  # writers back
    reread = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert [trial.params for trial in reread] == [fixed] * 3
    assert reread[0].distributions == reread[1].distributions == reread[2].distributions == space


def test_tpes_records_written_in_one_transaction_equal_those_written_one_by_one(storage) -> None:
    """Optuna's TPE (``constant_liar``, its default) records the decisions it sampled as a trial
    system attribute, which the block holds with the parameters."""
    space = {"op": optuna.distributions.CategoricalDistribution(["mbconv", "sepconv", "conv"]),
             "kernel": optuna.distributions.CategoricalDistribution([3, 5, 7])}
    found = []
    for held in (True, False):
        name = _study(storage, "tpe-records")
        study = optuna.create_study(storage=storage, study_name=name,
                                    sampler=optuna.samplers.TPESampler(seed=4, n_startup_trials=2))
        for index in range(5):
            with params_in_one_transaction(study) if held else contextlib.nullcontext():
                trial = study.ask(space)
            if index != 3:  # one stays running
                study.tell(trial, float(index % 3))
        reread = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        found.append([(t.params, t.system_attrs, t.state.name) for t in reread])
    assert found[0] == found[1]
    assert sum(any(key.startswith("tpe:relative_params") for key in attrs) for _, attrs, _ in found[0]) == 3


def test_the_caches_trials_kept_in_order_equal_optunas_sorted_reads(storage) -> None:
    """Trials arrive in the cache out of order when another driver asks between this one's reads."""
    name = _study(storage, "ordered")
    ours = optuna.create_study(storage=storage, study_name=name)
    assert fast_trial_reads(ours)
    other = optuna.load_study(study_name=name, storage=storage)
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    done = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL

    def same() -> None:
        plain = optuna.storages.get_storage(storage)  # Optuna's own cache, afresh
        for states in (None, done, (optuna.trial.TrialState.RUNNING,)):
            assert _fields(ours._storage.get_all_trials(ours._study_id, deepcopy=False, states=states)) == _fields(
                plain.get_all_trials(ours._study_id, deepcopy=False, states=states))
        copied = ours._storage.get_all_trials(ours._study_id)  # deep copies, as Optuna's
        assert _fields(copied) == _fields(plain.get_all_trials(ours._study_id))
        assert all(a is not b for a, b in zip(copied, ours._storage.get_all_trials(ours._study_id, deepcopy=False)))

    first = ours.ask(space)
    same()
    for _ in range(2):
        other.ask(space)  # numbers 1 and 2, not yet read by ours
    late = optuna.trial.Trial(ours, ours._storage.create_new_trial(ours._study_id))  # as new_trial does
    assert late.number == 3  # it reached ours' cache before 1 and 2 did
    ours.tell(first, 0.5)
    same()
    other.tell(2, state=optuna.trial.TrialState.FAIL)
    ours.tell(late, 0.25)
    for _ in range(3):
        ours.tell(ours.ask(space), 1.0)
    same()
    assert [t.number for t in ours.get_trials(deepcopy=False)] == list(range(7))


def test_a_trial_just_created_is_made_from_the_cache_as_it_would_be_read(storage) -> None:
    name = _study(storage, "created")
    study = optuna.create_study(storage=storage, study_name=name)
    study.tell(study.ask(), 1.0)
    trial_id = study._storage.create_new_trial(study._study_id)
    backend = study._storage._backend
    reads = []
    read = backend.get_trial
    backend.get_trial = lambda trial_id: reads.append(trial_id) or read(trial_id)
    with created_trial_cached(study, trial_id):
        made = optuna.trial.Trial(study, trial_id)
        running = study._storage.get_trial(trial_id)
        assert reads == []
        other = study.ask()  # another running trial is read from the database, as ever
        reads.clear()
        study._storage.get_trial(other._trial_id)
        assert reads == [other._trial_id]
    reads.clear()
    assert "get_trial" not in vars(study._storage) and running is not made._cached_frozen_trial  # a copy; gone
    assert _fields([made._cached_frozen_trial]) == _fields([optuna.storages.get_storage(storage).get_trial(trial_id)])
    made.set_user_attr("later", 1)  # outside the block a running trial is read from the database again
    assert study._storage.get_trial(trial_id).user_attrs == {"later": 1} and reads == [trial_id]  # read again


def test_trials_kept_in_order_through_gaps_and_replacements() -> None:
    view, cached = OrderedTrials(), {}
    arrivals = [0, 1, 4, 2, 1, 3, 4, 5, 7, 6, 5]  # 4 and 7 leave gaps; repeats replace the earlier record
    for step, number in enumerate(arrivals):
        trial = optuna.trial.FrozenTrial(
            number=number, state=optuna.trial.TrialState.RUNNING, value=None, values=None, datetime_start=None,
            datetime_complete=None, params={}, distributions={}, user_attrs={"step": step}, system_attrs={},
            intermediate_values={}, trial_id=number)
        cached[number] = trial
        view.put(trial)
        if step % 2:
            assert view.read(cached) == sorted(cached.values(), key=lambda t: t.number)
    assert view.read(cached) == sorted(cached.values(), key=lambda t: t.number)
    assert view.dense and [t.user_attrs["step"] for t in view.trials][5] == 10


def test_a_distribution_the_study_holds_otherwise_is_refused_in_one_transaction(storage) -> None:
    name = _study(storage, "distributions")
    study = optuna.create_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=0))
    space = {"kernel": optuna.distributions.CategoricalDistribution([3, 5, 7])}
    for _ in range(2):
        with params_in_one_transaction(study):
            study.ask(space)
    other = {"kernel": optuna.distributions.CategoricalDistribution([3, 5])}
    for asking in (study, optuna.load_study(study_name=name, storage=storage)):  # this driver, and another
        with pytest.raises(ValueError, match="dynamic value space"), params_in_one_transaction(asking):
            asking.ask(other)
    reread = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert [trial.distributions for trial in reread if trial.params] == [space, space]


def test_the_trial_count_is_every_trial_of_this_study_whoever_added_it(storage) -> None:
    name, other_name = _study(storage, "count"), _study(storage, "count-other")
    study = optuna.create_study(storage=storage, study_name=name)
    other = optuna.create_study(storage=storage, study_name=other_name)
    assert count_trials(study) == 0
    finished, failed = study.ask(), study.ask()
    study.ask()  # left running
    study.tell(finished, 1.0)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    other.ask()  # another study's trial is not counted
    elsewhere = optuna.load_study(study_name=name, storage=storage)  # a second driver on the same study
    elsewhere.ask()
    assert count_trials(study) == 4 == len(optuna.load_study(study_name=name, storage=storage).trials)
    assert count_trials(other) == 1


def test_create_then_resume_keeps_every_trial(storage: str) -> None:
    name = _study(storage, "resume")
    first = _controller(storage, name)
    for value in (0.5, 0.25, 0.75):
        first.tell(_ask(first, "a"), value, user_attrs={"reward": value})
    running = _ask(first, "a")

    again = CampaignStudy(_controller(storage, name).study, "b")  # a resumed driver opens the same study
    assert [t.value for t in again.finished()] == [0.5, 0.25, 0.75]
    assert [t.user_attrs["reward"] for t in again.finished()] == [0.5, 0.25, 0.75]
    assert sorted(again.evaluated()) == ["arch0", "arch1", "arch2"]
    assert [t.number for t in again.trials(optuna.trial.TrialState.RUNNING)] == [running]


def test_heartbeats_keep_live_drivers_and_stale_ones_are_failed(storage: str) -> None:
    name = _study(storage, "beats")
    a = _controller(storage, name)
    live = CampaignStudy(a.study, "driver-a")
    live.heartbeat()
    trial = _ask(a, "driver-a")
    b = CampaignStudy(_controller(storage, name).study, "driver-b")

    b.fail_stale(lineage=set())  # A beats: its trial stays
    assert b.trials(optuna.trial.TrialState.RUNNING)[0].number == trial
    b.fail_stale(lineage={"driver-a"}, keep=[trial])  # kept trials stay even for a dead driver
    assert b.trials(optuna.trial.TrialState.RUNNING)[0].number == trial

    a.study._storage.set_study_system_attr(a.study._study_id, "heartbeat:driver-a", time.time() - HEARTBEAT_STALE_S - 1)
    b.fail_stale(lineage=set())  # A's heartbeat went stale: A is dead
    failed = b.failed()
    assert [t.number for t in failed] == [trial] and failed[0].user_attrs["error"] == INTERRUPTED


def test_a_driver_of_this_run_directory_is_dead_whatever_its_heartbeat(storage: str) -> None:
    name = _study(storage, "lineage")
    a = _controller(storage, name)
    CampaignStudy(a.study, "old").heartbeat()
    trial = _ask(a, "old")
    resumed = CampaignStudy(_controller(storage, name).study, "new")
    resumed.fail_stale(lineage={"old"})
    assert [t.number for t in resumed.failed()] == [trial]


def test_controller_state_digests_keep_the_last_two(storage: str) -> None:
    name = _study(storage, "digests")
    study = CampaignStudy(_controller(storage, name).study, "d")
    for digest in ("1" * 64, "2" * 64, "3" * 64):
        study.record_state_digest("run", digest)
    reopened = CampaignStudy(_controller(storage, name).study, "e")
    assert reopened.state_digests("run") == ["2" * 64, "3" * 64] and reopened.state_digests("other") == []


def _drive(storage: str, study_name: str, driver: str, trials: int, seed: int, ready) -> None:
    """One driver in its own process: ask, beat and tell ``trials`` times."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    controller = _controller(storage, study_name, seed=seed)
    study = CampaignStudy(controller.study, driver)
    ready.wait(60)  # both drivers start their trials together
    for index in range(trials):
        number = _ask(controller, driver)
        study.heartbeat()
        if index == 1:
            controller.tell(number, Failed("a failed evaluation"))
        else:
            controller.tell(number, float(number), user_attrs={"driver_index": index})


def test_two_drivers_on_one_study_lose_nothing(storage: str) -> None:
    name = _study(storage, "two")
    _controller(storage, name)  # the first driver created the study
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    drivers = [context.Process(target=_drive, args=(storage, name, f"d{i}", 6, i, ready)) for i in range(2)]
    for process in drivers:
        process.start()
    ready.set()
    for process in drivers:
        process.join(120)
    assert [process.exitcode for process in drivers] == [0, 0]
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert len(trials) == 12 and len({t.number for t in trials}) == 12
    for driver in ("d0", "d1"):
        mine = [t for t in trials if t.user_attrs.get("driver") == driver]
        assert [t.state.name for t in mine].count("COMPLETE") == 5 and len(mine) == 6
    assert all(t.value == float(t.number) for t in trials if t.state.name == "COMPLETE")


def test_concurrent_tells_are_all_stored(storage: str) -> None:
    name = _study(storage, "tells")
    controllers = [_controller(storage, name, seed=seed) for seed in range(4)]
    asked = [[_ask(controller, f"t{i}") for _ in range(5)] for i, controller in enumerate(controllers)]
    start = threading.Barrier(len(controllers))
    errors: list[BaseException] = []

    def tell_all(controller, numbers: list[int]) -> None:
        try:
            start.wait(30)
            for number in numbers:
                controller.tell(number, number / 100, user_attrs={"told_by": threading.get_ident()})
        except BaseException as error:  # reported below, with the others
            errors.append(error)

    threads = [threading.Thread(target=tell_all, args=pair) for pair in zip(controllers, asked, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    done = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert sorted(t.number for t in done if t.state.name == "COMPLETE") == sorted(sum(asked, []))
    assert all(t.value == t.number / 100 for t in done)


# ----- SQLite: a damaged study.db ----------------------------------------------------------------

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damaged_run(tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A run directory whose study.db is damaged ``how``; (config file, study.db)."""
    from nas.campaign.config import config_from_dict

    run = tmp_path / "runs" / "hurt"
    run.mkdir(parents=True)
    config = tmp_path / "hurt.yaml"
    config.write_text(yaml.safe_dump(tiny_config("hurt")))
    (run / "config.yaml").write_text(config_from_dict(tiny_config("hurt")).to_yaml())
    db = run / "study.db"
    controller = _controller(f"sqlite:///{db}", "hurt")
    for value in range(30):
        controller.tell(_ask(controller, "x"), float(value), user_attrs={"padding": "p" * 400})
    data = db.read_bytes()
    if how == "truncated":
        db.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64)
    else:  # a page in the middle overwritten
        page = 4096
        db.write_bytes(data[: 2 * page] + b"\xff" * page + data[3 * page:])
    return config, db


@pytest.mark.parametrize("how", ["truncated", "garbage", "overwritten_page"])
def test_a_damaged_study_db_is_named_and_never_written(tmp_path, monkeypatch, how: str) -> None:
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    config, db = _damaged_run(tmp_path, how)
    before = _sha(db)
    with pytest.raises(CampaignError, match="is not a readable SQLite study"):
        check_storage(f"sqlite:///{db}")
    for args in (("search", "-c", str(config), "--runs-dir", str(tmp_path / "runs")),
                 ("results", str(db.parent)), ("plot", str(db.parent))):
        result = run_nas_here(*args, cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert len(lines) == 1 and str(db) in lines[0] and "not a readable SQLite study" in lines[0], (args, lines)
    assert _sha(db) == before


def test_a_study_db_another_process_holds_locked_is_waited_for_not_called_damaged(tmp_path) -> None:
    db = tmp_path / "study.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="locked")
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        writer.execute("BEGIN EXCLUSIVE")  # as a driver holds it while it commits
        before = _sha(db)
        with pytest.raises(CampaignError, match="stayed locked by another process for 0.2 s"):
            check_sqlite_file(db, busy_wait_s=0.2)
        releaser = threading.Timer(0.5, writer.execute, args=("ROLLBACK",))
        releaser.start()
        check_sqlite_file(db, busy_wait_s=30.0)  # waits for the lock, then finds the file sound
        releaser.join()
    finally:
        writer.close()
    assert _sha(db) == before


def test_waiting_for_a_storage_that_never_comes_back_is_bounded(tmp_path) -> None:
    started = time.monotonic()
    with pytest.raises(CampaignError, match="re-run the same command to resume"):
        wait_for_storage("postgresql+psycopg2://nobody@127.0.0.1:9/none", 3.0, lambda line: None)
    assert time.monotonic() - started < 30


# ----- PostgreSQL: a restart in the middle of a campaign --------------------------------------------

def _finished(url: str, name: str) -> list:
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except Exception:  # not created yet (KeyError), or the server is restarting
        return []
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


@pytest.mark.slow
def test_a_postgresql_restart_mid_campaign_is_ridden_out(postgres_server, tmp_path, monkeypatch) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    url = postgres_server.url
    name = f"restart-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "pg.yaml"
    config.write_text(yaml.safe_dump(tiny_config(name, storage=url, budget={"trials": 3},
                                                 controller={"name": "random", "options": {}})))
    driver = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "-c", str(config), "--runs-dir",
                               str(tmp_path / "runs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while len(_finished(url, name)) < 1 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        before = {t.number: t.user_attrs["arch_id"] for t in _finished(url, name)}
        postgres_server.pause()
        time.sleep(20)  # longer than a heartbeat's interval: the driver meets the outage
        postgres_server.resume()
        out, err = driver.communicate(timeout=500)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-3000:]
    done = _finished(url, name)
    assert len(done) >= 3 and all(before[n] == a for n, a in ((t.number, t.user_attrs["arch_id"]) for t in done)
                                  if n in before)
    assert set(before) <= {t.number for t in done}  # finished before the restart: kept as they were
    assert "stopped answering" in err and "answers again" in err, err[-3000:]  # it met the outage and waited
