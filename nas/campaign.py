"""The search loop: the controller proposes, Ray workers evaluate, the reward is told back, and
the Optuna study in the campaign's storage records everything.

Run directory ``<runs_dir>/<name>/``: ``config.yaml`` (resolved), ``study.db`` (default
storage), ``controller.pkl`` (controller state after every tell), ``trials.csv|parquet``.

Resume (re-running the same config):

- finished trials are never re-evaluated: a proposal whose ``arch_id`` was already evaluated
  reuses that result (``reused_from``), so no architecture is evaluated twice;
- trials that were running when the driver died are marked FAIL ("interrupted") and proposed
  again: the controller state is the one saved after the last tell, so with one worker and the
  same seed the sequence of architectures is that of an uninterrupted run;
- ``rerun_failed`` evaluates the architectures of failed trials again (each failed trial once; its
  re-run records ``rerun_of``).
"""
from __future__ import annotations

import fcntl
import math
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from nas.campaign_config import CampaignConfig, identity_of
from nas.errors import NasError
from nas.spec import ArchSpec

INTERRUPTED = "interrupted: the campaign stopped while this trial was running"
CONFIG_FILE = "config.yaml"
STATE_FILE = "controller.pkl"
DRIVERS_FILE = "drivers.txt"
HEARTBEAT_EVERY_S = 15.0
HEARTBEAT_STALE_S = 120.0


class CampaignError(NasError):
    """The campaign cannot start or continue (bad storage, a changed config, ...)."""


@dataclass
class Progress:
    """Live counts for the progress line."""

    budget: int
    finished: int = 0
    failed: int = 0
    failed_now: int = 0
    reused: int = 0
    best: float = float("nan")
    started: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)

    def line(self, workers: int, in_flight: int) -> str:
        remaining = max(0, self.budget - self.finished)
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            eta = f"{math.ceil(remaining / max(1, workers)) * mean / 60:.1f} min"
        else:
            eta = "?"
        best = f"{self.best:.4f}" if self.best == self.best else "-"
        return (f"[{self.finished}/{self.budget}] failed {self.failed}  reused {self.reused}  running {in_flight}  "
                f"best reward {best}  elapsed {(time.monotonic() - self.started) / 60:.1f} min  ETA {eta}")


@dataclass(frozen=True)
class CampaignSummary:
    run_dir: Path
    finished: int
    failed: int
    evaluated: int
    best_reward: float
    best_trial: int | None
    wall_seconds: float
    stopped_early: bool


# ----- set-up and checks --------------------------------------------------------------------------

def check_storage(url: str) -> None:
    """Connect to the storage once; an unreachable database is a one-line error."""
    import optuna

    storage = None
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}
                                             if not url.startswith("sqlite") else None)
        storage.get_all_studies()
    except Exception as error:  # SQLAlchemy raises many kinds
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CampaignError(f"storage {url!r} is unreachable: {message}") from None
    finally:
        if storage is not None:
            storage.engine.dispose()


def check_dataset(config: CampaignConfig) -> None:
    if config.evaluator.dataset != "digits" and not Path(config.evaluator.dataset).expanduser().is_dir():
        from nas.data import DatasetError

        raise DatasetError(f"evaluator.dataset: directory {config.evaluator.dataset!r} not found "
                           "(use 'digits' or a CIFAR-10 / ImageFolder directory)")


def check_run_identity(config: CampaignConfig, runs_dir: str | Path) -> None:
    """A campaign resumed under the same name must search the same way; nothing is written."""
    saved = config.run_dir(runs_dir) / CONFIG_FILE
    if not saved.is_file():
        return
    stored = yaml.safe_load(saved.read_text()) or {}
    mine = config.search_identity()
    theirs = identity_of(stored)
    for path, old, new in _differences(theirs, mine):
        raise CampaignError(f"campaign {config.name!r} in {str(saved.parent)!r} was started with {path}={old!r}, "
                            f"this config has {path}={new!r}; resume with the same settings or choose a new name")


def _differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in list(new) + [k for k in old if k not in new]:
            found += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return found
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return [] if list(old) == list(new) else [(path, old, new)]
    return [] if old == new else [(path, old, new)]


def hold_run_dir(run_dir: Path, name: str) -> Any:
    """Lock the run directory for this driver: one driver per run directory (several drivers
    share a study from run directories of their own)."""
    handle = open(run_dir / ".driver.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise CampaignError(f"campaign {name!r} is already running from {str(run_dir)!r}; to share its study, "
                            "start the other driver with its own --runs-dir") from None
    return handle


def read_lineage(run_dir: Path) -> set[str]:
    path = run_dir / DRIVERS_FILE
    return set(path.read_text().split()) if path.is_file() else set()


def candidate_spec(space: Any, decisions: dict[str, Any], config: CampaignConfig, num_classes: int) -> ArchSpec:
    """The spec the campaign evaluates for ``decisions`` (classes and resolution of the proxy task)."""
    spec = space.decode(decisions)
    return spec.replace(num_classes=num_classes, resolution=config.evaluator.resolution)


def dataset_classes(config: CampaignConfig) -> int:
    from nas.data import open_data

    return open_data(config.evaluator.data_config(config.seed)).num_classes


# ----- the driver ---------------------------------------------------------------------------------

class Campaign:
    """One campaign: controller, storage, Ray executor. ``run()`` evaluates up to the budget."""

    def __init__(self, config: CampaignConfig, runs_dir: str | Path = "runs", *,
                 log: Callable[[str], None] | None = None) -> None:
        from controllers import load_state
        from controllers.optuna_bridge import study_controller
        from search_spaces import get_space

        self.config = config
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        check_dataset(config)
        self.space = get_space(config.space.name, **dict(config.space.options))
        from controllers import UnknownControllerError, controller_names

        if config.controller.name not in controller_names():
            raise UnknownControllerError(f"unknown controller {config.controller.name!r}; known: {controller_names()}")
        url = config.storage_url(runs_dir)
        check_run_identity(config, runs_dir)
        if not url.startswith("sqlite"):
            check_storage(url)  # before anything is written
        self.num_classes = dataset_classes(config)
        self.run_dir = config.run_dir(runs_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._run_lock = hold_run_dir(self.run_dir, config.name)
        self.driver_id = uuid.uuid4().hex[:12]
        self.lineage = read_lineage(self.run_dir)  # drivers that ran from this run directory before
        if url.startswith("sqlite"):
            check_storage(url)
        self.storage_url = url
        self.controller = study_controller(config.controller.name, self.space, config.seed, storage=url,
                                           study_name=config.name, **dict(config.controller.options))
        self.study = self.controller.study
        self._last_heartbeat = 0.0
        self._heartbeat()
        with (self.run_dir / DRIVERS_FILE).open("a") as drivers:
            drivers.write(self.driver_id + "\n")
        self.state_path = self.run_dir / STATE_FILE
        self.to_rerun: list[tuple[dict[str, Any], int]] = []  # (decisions, the failed trial's number)
        if self.state_path.is_file():
            self._recover(load_state)
        else:
            self._fail_running(set())
        (self.run_dir / CONFIG_FILE).write_text(config.to_yaml())

    # ----- recovery ---------------------------------------------------------------------------

    def _recover(self, load_state: Callable[..., None]) -> None:
        """Restore the controller saved after the last tell, then settle the trials it missed."""
        import optuna

        load_state(self.controller, self.state_path, allow_later_trials=True)
        frozen = {trial.number: trial for trial in self.study.get_trials(deepcopy=False)}
        for number in sorted(self.controller.pending_numbers()):
            trial = frozen[number]
            if trial.state == optuna.trial.TrialState.RUNNING:
                # Asked before the last save and running when the driver died: fail it for the
                # controller, and evaluate its architecture again outside the controller.
                self.controller.tell(number, self._failed(INTERRUPTED))
                self.to_rerun.append((dict(trial.params), trial.number))
            else:  # told to the study just before the driver died, but not yet to the controller
                self.controller.replay(trial)
        self._fail_running(set(self.controller.pending_numbers()))
        self._save_state()

    def _fail_running(self, keep: set[int]) -> None:
        """Trials left RUNNING by a dead driver become FAIL (the restored controller proposes its
        own again). A driver is dead if it ran from this run directory before, or if its heartbeat
        in the study is stale; trials of live drivers sharing the study are left alone."""
        import optuna

        storage = self.study._storage
        beats = storage.get_study_system_attrs(self.study._study_id)
        now = time.time()
        for trial in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            driver = trial.user_attrs.get("driver")
            alive = now - beats.get(f"heartbeat:{driver}", 0.0) < HEARTBEAT_STALE_S
            if trial.number in keep or (driver not in self.lineage and driver is not None and alive):
                continue
            storage.set_trial_user_attr(trial._trial_id, "error", INTERRUPTED)
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)

    def _heartbeat(self) -> None:
        """Tell drivers sharing the study that this one is alive (at most every few seconds)."""
        now = time.time()
        if now - self._last_heartbeat >= HEARTBEAT_EVERY_S:
            self.study._storage.set_study_system_attr(self.study._study_id, f"heartbeat:{self.driver_id}", now)
            self._last_heartbeat = now

    @staticmethod
    def _failed(reason: str) -> Any:
        from controllers import Failed

        return Failed(reason)

    def _save_state(self) -> None:
        from controllers import save_state

        save_state(self.controller, self.state_path)

    # ----- bookkeeping ------------------------------------------------------------------------

    def _finished_trials(self) -> list[Any]:
        import optuna

        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    def _evaluated(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """arch_id -> (number, attributes) of the first finished trial that evaluated it."""
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        for trial in self._finished_trials():
            arch = trial.user_attrs.get("arch_id")
            if arch and "reused_from" not in trial.user_attrs and arch not in found:
                found[arch] = (trial.number, dict(trial.user_attrs))
        return found

    def _value(self, attrs: dict[str, Any]) -> Any:
        if len(self.controller.directions) == 2:
            return (attrs["accuracy"], attrs["latency_ms"])
        return attrs["reward"]

    def _score(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = dict(attrs)
        attrs["reward"] = self.config.reward.score(attrs["accuracy"], attrs["latency_ms"])
        return attrs

    # ----- the loop ---------------------------------------------------------------------------

    def run(self, *, rerun_failed: bool = False) -> CampaignSummary:
        """Evaluate until the budget of finished trials (or the wall time) is reached."""
        import optuna

        from nas.profile import profile

        config = self.config
        budget = config.budget.trials
        progress = Progress(budget=budget)
        finished = self._finished_trials()
        progress.finished = len(finished)
        progress.failed = len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))
        rewards = [t.user_attrs.get("reward") for t in finished if t.user_attrs.get("reward") is not None]
        progress.best = max(rewards) if rewards else float("nan")
        if rerun_failed:
            trials = self.study.get_trials(deepcopy=False)
            retried = {t.user_attrs.get("rerun_of") for t in trials} | {number for _, number in self.to_rerun}
            self.to_rerun += [(dict(t.params), t.number) for t in trials
                              if t.state == optuna.trial.TrialState.FAIL and t.params and t.number not in retried]
        started = time.monotonic()
        if progress.finished >= budget and not self.to_rerun:
            self.log(f"campaign {config.name!r} already has {progress.finished} finished trials (budget {budget})")
            return self._summary(progress, started, stopped_early=False)

        executor: RayExecutor | None = None  # Ray starts only once something must be evaluated
        in_flight: dict[Any, dict[str, Any]] = {}  # future -> job
        waiting: dict[str, list[dict[str, Any]]] = {}  # arch_id -> jobs waiting on an in-flight twin
        evaluated = self._evaluated()
        stopped_early = False
        interrupted = False

        def deadline_passed() -> bool:
            return config.budget.wall_time_s is not None and time.monotonic() - started > config.budget.wall_time_s

        def submit(job: dict[str, Any]) -> None:
            nonlocal executor
            if executor is None:
                executor = RayExecutor(config)
                stop.install()  # after ray.init, which sets its own handlers
            in_flight[executor.submit(job)] = job

        def open_slots() -> int:
            waiting_count = sum(len(jobs) for jobs in waiting.values())
            return budget - progress.finished - len(in_flight) - waiting_count

        self.log(f"campaign {config.name!r}: {progress.finished}/{budget} finished; storage {self.storage_url}; "
                 f"{config.workers} worker(s) on Ray")
        limit = config.budget.trials if config.budget.max_failed is None else config.budget.max_failed
        timeout = config.evaluator.timeout_s
        # Bounded: every pass submits, finishes or waits up to a second, and no trial runs past its timeout.
        max_passes = int((budget + len(self.to_rerun) + limit + 2) * (timeout + 60) * 2)
        with StopRequest() as stop:
            try:
                for _ in range(max_passes):
                    if stop.requested:
                        raise KeyboardInterrupt
                    while len(in_flight) < config.workers and not deadline_passed() and (
                            self.to_rerun or open_slots() > 0):
                        job = self._next_job(profile, progress)
                        if job is None:
                            continue
                        arch = job["arch_id"]
                        if arch in evaluated:
                            number, stored = evaluated[arch]
                            self._finish(job, stored, progress, reused=number)
                            continue
                        if any(other["arch_id"] == arch for other in in_flight.values()):
                            waiting.setdefault(arch, []).append(job)
                            continue
                        submit(job)
                    if not in_flight:
                        stopped_early = deadline_passed() and progress.finished < budget
                        break
                    assert executor is not None  # something is in flight
                    outcomes = executor.wait(list(in_flight), timeout=1.0)
                    now = time.monotonic()
                    for future, job in list(in_flight.items()):
                        if now - job["submitted"] > timeout and all(future is not f for f, _ in outcomes):
                            executor.cancel([future])
                            outcomes.append((future, CampaignError(f"evaluation timed out after {timeout:g} s "
                                                                   "(evaluator.timeout_s)")))
                    for future, outcome in outcomes:
                        job = in_flight.pop(future)
                        if isinstance(outcome, BaseException):
                            self._fail(job, outcome, progress)
                            twins = waiting.pop(job["arch_id"], [])
                            if twins:  # the next twin evaluates it; the others keep waiting on that one
                                if twins[1:]:
                                    waiting[job["arch_id"]] = twins[1:]
                                submit(twins[0])
                            continue
                        evaluated[job["arch_id"]] = (job["trial"], self._finish(job, outcome, progress))
                        for twin in waiting.pop(job["arch_id"], []):
                            self._finish(twin, outcome, progress, reused=job["trial"])
                        self.log(progress.line(config.workers, len(in_flight)))
                    self._heartbeat()
                else:
                    raise CampaignError(f"the search loop reached its bound of {max_passes} passes; "
                                        "re-run the same command to continue")
            except KeyboardInterrupt:
                interrupted = True
                self.log("interrupted: stopping the running trials; re-run the same command to resume")
            finally:
                if in_flight or waiting:
                    if executor is not None:
                        executor.cancel(list(in_flight))
                    for job in list(in_flight.values()) + [j for jobs in waiting.values() for j in jobs]:
                        self._tell_failure(job, INTERRUPTED)
                if executor is not None:
                    executor.close()
                self._write_tables()
        if interrupted:
            raise KeyboardInterrupt
        return self._summary(progress, started, stopped_early)

    def _next_job(self, profile: Callable[..., Any], progress: Progress) -> dict[str, Any] | None:
        """Ask the controller (or take a re-run) and describe the evaluation; None if the proposal
        cannot even be built (the trial then FAILs with the reason)."""
        rerun_of = None
        if self.to_rerun:
            decisions, rerun_of = self.to_rerun.pop(0)
            trial = self.controller.ask_fixed(decisions)
        else:
            trial = self.controller.ask()
            decisions = dict(trial.decisions)
        attrs: dict[str, Any] = {"decisions": decisions, "seed": self.config.seed, "driver": self.driver_id}
        if rerun_of is not None:
            attrs["rerun_of"] = rerun_of
        try:
            spec = candidate_spec(self.space, decisions, self.config, self.num_classes)
            counts = profile(spec)
        except ValueError as error:  # decisions the space cannot turn into a network
            self.controller.set_user_attrs(trial.number, attrs)
            self._fail({"trial": trial.number, "arch_id": None}, error, progress)
            return None
        attrs.update(spec_yaml=spec.to_yaml(), arch_id=spec.arch_id, params=counts.params, madds=counts.madds)
        self.controller.set_user_attrs(trial.number, attrs)
        return {"trial": trial.number, "arch_id": spec.arch_id, "spec_yaml": attrs["spec_yaml"],
                "submitted": time.monotonic()}

    def _finish(self, job: dict[str, Any], outcome: dict[str, Any], progress: Progress,
                reused: int | None = None) -> dict[str, Any]:
        own = ("decisions", "spec_yaml", "arch_id", "params", "madds", "seed", "reused_from", "error", "rerun_of",
               "driver")
        attrs = {key: value for key, value in outcome.items() if key not in own}
        attrs = self._score(attrs)
        if reused is not None:
            attrs["reused_from"] = reused
            progress.reused += 1
        else:
            progress.durations.append(time.monotonic() - job["submitted"])
        self.controller.tell(job["trial"], self._value(attrs), user_attrs=attrs)
        self._save_state()
        progress.finished += 1
        progress.best = attrs["reward"] if progress.best != progress.best else max(progress.best, attrs["reward"])
        return attrs

    def _fail(self, job: dict[str, Any], error: BaseException, progress: Progress) -> None:
        message = one_line_error(error)
        self._tell_failure(job, message)
        progress.failed += 1
        progress.failed_now += 1
        self.log(f"trial {job['trial']} failed: {message}")
        limit = self.config.budget.max_failed
        limit = self.config.budget.trials if limit is None else limit
        if progress.failed_now > limit:
            raise CampaignError(f"{progress.failed_now} trials failed in this run (budget.max_failed {limit}); "
                                f"the last: {message}")

    def _tell_failure(self, job: dict[str, Any], message: str) -> None:
        self.controller.tell(job["trial"], self._failed(message), user_attrs={"error": message})
        self._save_state()

    def _write_tables(self) -> None:
        from nas.results import trials_frame, write_tables

        write_tables(trials_frame(self.study.get_trials(deepcopy=False)), self.run_dir)

    def _summary(self, progress: Progress, started: float, stopped_early: bool) -> CampaignSummary:
        finished = self._finished_trials()
        best = max(finished, key=lambda t: t.user_attrs.get("reward", -math.inf), default=None)
        evaluated = sum(1 for t in finished if "reused_from" not in t.user_attrs)
        return CampaignSummary(run_dir=self.run_dir, finished=len(finished), failed=progress.failed,
                               evaluated=evaluated,
                               best_reward=best.user_attrs.get("reward", math.nan) if best else math.nan,
                               best_trial=best.number if best else None,
                               wall_seconds=time.monotonic() - started, stopped_early=stopped_early)


def one_line_error(error: BaseException) -> str:
    """The root cause of a (Ray-wrapped) evaluation error, on one line."""
    cause = getattr(error, "cause", None) or error
    text = f"{type(cause).__name__}: {cause}" if not isinstance(cause, NasError) else str(cause)
    lines = [line for line in str(text).splitlines() if line.strip()]
    return " ".join(lines[-1:] if "Traceback" in str(text) else lines[:1])[:500] or type(cause).__name__


# ----- Ray execution ------------------------------------------------------------------------------

class RayExecutor:
    """Runs evaluations as Ray tasks (one CPU each, retried if the worker process dies)."""

    def __init__(self, config: CampaignConfig) -> None:
        from nas.raycluster import connect_ray, import_ray

        self.ray = ray = import_ray()
        self.config = config
        self.started_ray = connect_ray(config.address, max(config.workers, 1) * config.evaluator.threads)
        from nas.evaluate import evaluate_candidate

        self.task = ray.remote(num_cpus=config.evaluator.threads, max_retries=config.retries,
                               retry_exceptions=False)(evaluate_candidate)

    def submit(self, job: dict[str, Any]) -> Any:
        import dataclasses

        job["submitted"] = time.monotonic()
        return self.task.remote(job["spec_yaml"], dataclasses.asdict(self.config.evaluator),
                                dataclasses.asdict(self.config.latency), self.config.seed)

    def wait(self, futures: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        ready, _ = self.ray.wait(futures, num_returns=1, timeout=timeout)
        outcomes = []
        for future in ready:
            try:
                outcomes.append((future, self.ray.get(future)))
            except Exception as error:  # the evaluation raised, or its worker died past the retries
                outcomes.append((future, error))
        return outcomes

    def cancel(self, futures: list[Any]) -> None:
        for future in futures:
            try:
                self.ray.cancel(future, force=True)
            except Exception:  # already finished or gone
                pass

    def close(self) -> None:
        if self.started_ray:
            self.ray.shutdown()


class StopRequest:
    """Ctrl-C and SIGTERM ask the loop to stop; the loop checks between waits.

    Ray replaces a driver's handlers when it starts, so :meth:`install` runs again right after
    ``ray.init``; a signal then never lands inside one of Ray's blocking calls.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        self.install()
        return self

    def install(self) -> None:
        """(Re)take SIGINT and SIGTERM; what was there first is restored on exit."""
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(number, self._handle)
            self.previous.setdefault(number, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
