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

import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from nas.campaign_config import CampaignConfig
from nas.errors import NasError
from nas.spec import ArchSpec

INTERRUPTED = "interrupted: the campaign stopped while this trial was running"
CONFIG_FILE = "config.yaml"
STATE_FILE = "controller.pkl"


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

    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}
                                             if not url.startswith("sqlite") else None)
        storage.get_all_studies()
    except Exception as error:  # SQLAlchemy raises many kinds
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CampaignError(f"storage {url!r} is unreachable: {message}") from None


def check_dataset(config: CampaignConfig) -> None:
    if config.evaluator.dataset != "digits" and not Path(config.evaluator.dataset).expanduser().is_dir():
        from nas.data import DatasetError

        raise DatasetError(f"evaluator.dataset: directory {config.evaluator.dataset!r} not found "
                           "(use 'digits' or a CIFAR-10 / ImageFolder directory)")


def prepare_run(config: CampaignConfig, runs_dir: str | Path) -> Path:
    """Create (or check) the run directory. A different search config under the same name is an
    error, and nothing already stored is touched."""
    run_dir = config.run_dir(runs_dir)
    saved = run_dir / CONFIG_FILE
    if saved.is_file():
        stored = yaml.safe_load(saved.read_text()) or {}
        mine = config.search_identity()
        differing = [key for key in mine if stored.get(key) != mine[key]]
        if differing:
            raise CampaignError(f"campaign {config.name!r} in {str(run_dir)!r} was started with different "
                                f"{differing[0]!r} settings; resume with the same config or choose a new name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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
        self.run_dir = prepare_run(config, runs_dir)
        check_storage(url)
        self.storage_url = url
        self.num_classes = dataset_classes(config)
        self.controller = study_controller(config.controller.name, self.space, config.seed, storage=url,
                                           study_name=config.name, **dict(config.controller.options))
        self.study = self.controller.study
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
        """Trials left RUNNING by a dead driver (asked after the last save) become FAIL; the
        restored controller proposes them again."""
        import optuna

        storage = self.study._storage
        for trial in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial.number in keep:
                continue
            storage.set_trial_user_attr(trial._trial_id, "error", INTERRUPTED)
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)

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

        executor = RayExecutor(config)
        in_flight: dict[Any, dict[str, Any]] = {}  # future -> job
        waiting: dict[str, list[dict[str, Any]]] = {}  # arch_id -> jobs waiting on an in-flight twin
        evaluated = self._evaluated()
        stopped_early = False
        interrupted = False

        def deadline_passed() -> bool:
            return config.budget.wall_time_s is not None and time.monotonic() - started > config.budget.wall_time_s

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
                        job = self._next_job(profile)
                        arch = job["arch_id"]
                        if arch in evaluated:
                            number, stored = evaluated[arch]
                            self._finish(job, stored, progress, reused=number)
                            continue
                        if any(other["arch_id"] == arch for other in in_flight.values()):
                            waiting.setdefault(arch, []).append(job)
                            continue
                        in_flight[executor.submit(job)] = job
                    if not in_flight:
                        stopped_early = deadline_passed() and progress.finished < budget
                        break
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
                            for twin in waiting.pop(job["arch_id"], []):
                                in_flight[executor.submit(twin)] = twin
                            continue
                        evaluated[job["arch_id"]] = (job["trial"], self._finish(job, outcome, progress))
                        for twin in waiting.pop(job["arch_id"], []):
                            self._finish(twin, outcome, progress, reused=job["trial"])
                        self.log(progress.line(config.workers, len(in_flight)))
            except KeyboardInterrupt:
                interrupted = True
                self.log("interrupted: stopping the running trials; re-run the same command to resume")
            finally:
                if in_flight or waiting:
                    executor.cancel(list(in_flight))
                    for job in list(in_flight.values()) + [j for jobs in waiting.values() for j in jobs]:
                        self._tell_failure(job, INTERRUPTED)
                executor.close()
                self._write_tables()
        if interrupted:
            raise KeyboardInterrupt
        return self._summary(progress, started, stopped_early)

    def _next_job(self, profile: Callable[..., Any]) -> dict[str, Any]:
        """Ask the controller (or take a re-run) and describe the evaluation."""
        rerun_of = None
        if self.to_rerun:
            decisions, rerun_of = self.to_rerun.pop(0)
            trial = self.controller.ask_fixed(decisions)
        else:
            trial = self.controller.ask()
            decisions = dict(trial.decisions)
        spec = candidate_spec(self.space, decisions, self.config, self.num_classes)
        counts = profile(spec)
        attrs = {"decisions": decisions, "spec_yaml": spec.to_yaml(), "arch_id": spec.arch_id, "params": counts.params,
                 "madds": counts.madds, "seed": self.config.seed}
        if rerun_of is not None:
            attrs["rerun_of"] = rerun_of
        self.controller.set_user_attrs(trial.number, attrs)
        return {"trial": trial.number, "arch_id": spec.arch_id, "spec_yaml": attrs["spec_yaml"], "attempts": 0,
                "submitted": time.monotonic()}

    def _finish(self, job: dict[str, Any], outcome: dict[str, Any], progress: Progress,
                reused: int | None = None) -> dict[str, Any]:
        own = ("decisions", "spec_yaml", "arch_id", "params", "madds", "seed", "reused_from", "error", "rerun_of")
        attrs = {key: value for key, value in outcome.items() if key not in own}
        attrs = self._score(attrs)
        if reused is not None:
            attrs["reused_from"] = reused
            progress.reused += 1
        else:
            progress.durations.append(time.monotonic() - job["submitted"])
        attrs["attempts"] = job["attempts"] + (0 if reused is not None else 1)
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
        self.controller.tell(job["trial"], self._failed(message), user_attrs={"error": message,
                                                                             "attempts": job["attempts"] + 1})
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
        try:
            import ray
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise CampaignError("campaigns run on Ray: pip install 'ray>=2.9'") from error
        self.ray = ray
        self.config = config
        self.started_ray = False
        if not ray.is_initialized():
            environment = {"env_vars": {"GLOG_v": "3", **{k: v for k, v in os.environ.items()
                                                          if k in ("NAS_LOCK_DIR", "NAS_CACHE_DIR")}}}
            project = str(Path(__file__).resolve().parent.parent)
            environment["env_vars"]["PYTHONPATH"] = os.pathsep.join(
                [project] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
            if config.address:
                ray.init(address=config.address, runtime_env=environment, log_to_driver=False)
            else:
                ray.init(num_cpus=max(config.workers, 1) * config.evaluator.threads, include_dashboard=False,
                         runtime_env=environment, log_to_driver=False, configure_logging=True,
                         logging_level="ERROR")
            self.started_ray = True
        from nas.evaluate import evaluate_candidate

        self.task = ray.remote(num_cpus=config.evaluator.threads, max_retries=config.retries,
                               retry_exceptions=False)(evaluate_candidate)

    def submit(self, job: dict[str, Any]) -> Any:
        import dataclasses

        job["attempts"] = job.get("attempts", 0)
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

    Installed after Ray starts (Ray replaces the handlers of a driver), so that a signal never
    lands inside one of Ray's blocking calls.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
