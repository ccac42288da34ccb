"""The search loop: the controller proposes, Ray workers evaluate, the reward is told back, and
the Optuna study in the campaign's storage records everything.

The run directory is described in :mod:`nas.campaign.rundir`, the study in
:mod:`nas.campaign.study`. Resume (re-running the same config):

- finished trials are never re-evaluated: a proposal whose ``arch_id`` was already evaluated
  reuses that result (``reused_from``), so no architecture is evaluated twice;
- trials that were running when the driver died are marked FAIL ("interrupted") and proposed
  again: the controller state is the one saved after the last tell, so with one worker and the
  same seed the sequence of architectures is that of an uninterrupted run;
- ``rerun_failed`` evaluates the architectures of failed trials again (each failed trial once; its
  re-run records ``rerun_of``).
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import math
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from controllers import Failed, StudyController, UnknownControllerError, controller_names, save_state
from controllers.optuna_bridge import study_controller
from controllers.statefile import read_state
from latency.config import make_backend
from latency.errors import StampMismatchError
from latency.predictor import has_predictor, open_predictor
from latency.stamp import device_name
from nas.campaign.baselines import BaselineJob, BaselineStudy, Comparison, baseline_specs, compare, front_of
from nas.campaign.config import CampaignConfig
from nas.campaign.evaluate import Evaluation, ScreenGate, evaluate_candidate
from nas.campaign.results import trials_frame, write_tables
from nas.campaign.rundir import RunDir
from nas.campaign.study import (
    INTERRUPTED,
    RUNNING,
    STORAGE_ERRORS,
    CampaignError,
    CampaignStudy,
    StorageLostError,
    check_storage,
    wait_for_storage,
)
from nas.runtime.devicelock import device_lock
from nas.runtime.pool import JobPool, Outcome
from nas.spec.arch import ArchSpec
from nas.spec.errors import NasError
from nas.spec.profile import profile
from nas.training.config import DatasetError
from nas.training.data import open_cached
from search_spaces import SearchSpace, get_space

# A campaign worker is replaced after this many evaluations: MindSpore keeps every compiled graph
# of a process, so a worker that trained hundreds of networks would hold all their graphs. A new
# worker costs a few seconds (a process start and the MindSpore import), under 10% of a trial.
RECYCLE_AFTER = 8
# A storage that stops answering (a PostgreSQL restart) is waited for this long, at most this many
# times per command, before the campaign stops with the error (finished trials stay in the storage).
STORAGE_PATIENCE_S = 120.0
STORAGE_RECONNECTS = 5


@dataclass
class Progress:
    """Live counts for the progress line."""

    budget: int
    finished: int = 0
    failed: int = 0
    failed_now: int = 0
    reused: int = 0
    imprecise: int = 0  # finished trials whose latency interval stayed wider than the tolerance
    predicted: int = 0  # screen: finished trials whose latency was predicted, not measured
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
        imprecise = f"  imprecise latency {self.imprecise}" if self.imprecise else ""
        predicted = f"  latency predicted only {self.predicted}" if self.predicted else ""
        return (f"[{self.finished}/{self.budget}] failed {self.failed}  reused {self.reused}{imprecise}{predicted}  "
                f"running {in_flight}  best reward {best}  "
                f"elapsed {(time.monotonic() - self.started) / 60:.1f} min  ETA {eta}")


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
    comparison: Comparison | None = None  # the front against the baselines (None: baselines off)


@dataclass(frozen=True)
class ProposalAttrs:
    """What the driver records on a trial before it is evaluated (visible if the driver dies)."""

    decisions: dict[str, Any]
    seed: int
    driver: str
    rerun_of: int | None = None
    spec_yaml: str | None = None
    arch_id: str | None = None
    params: int | None = None
    madds: int | None = None

    def attrs(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@dataclass(frozen=True)
class CandidateJob:
    """One evaluation: the trial it belongs to and the spec to evaluate."""

    trial: int
    arch_id: str | None
    spec_yaml: str
    submitted: float = field(default_factory=time.monotonic)


def check_dataset(config: CampaignConfig) -> None:
    """Open the proxy task's data before anything is written: a missing or broken dataset, or a
    subset larger than its training split, is a named error up front (opened once per process)."""
    try:
        open_cached(config.evaluator.data_config(config.seed))
    except DatasetError as error:
        raise DatasetError(f"evaluator.dataset {config.evaluator.dataset!r}: {error}") from None


def check_predictor(config: CampaignConfig) -> None:
    """A campaign that predicts latency (``latency.source`` lut, both or screen) needs a readable predictor
    at the resolution it measures at; fail before anything is written."""
    latency = config.latency
    if latency.source not in ("lut", "both", "screen") or latency.lut is None:
        return
    if latency.source == "screen" and not has_predictor(latency.lut):
        raise CampaignError(f"latency.lut: source 'screen' needs a fitted predictor in {latency.lut!r}, which has "
                            f"none; fit one with 'nas latency fit --lut {latency.lut}'")
    predictor = open_predictor(latency.lut)  # a missing or corrupt one raises a named error
    try:
        resolution = config.measure_resolution()
        if predictor.stamp.resolution != resolution:
            raise CampaignError(f"latency.lut: {latency.lut!r} predicts at {predictor.stamp.resolution} px, but this "
                                f"campaign measures latency at {resolution} px (latency.resolution)")
        if latency.address is not None:
            return  # the device host's stamp is known only there; its measurements carry it
        stamp = make_backend(dataclasses.replace(latency, cache=False), resolution=resolution).stamp(
            resolution=resolution)
        if stamp.key != predictor.stamp.key:
            raise StampMismatchError(f"latency.lut: {latency.lut!r} predicts for [{predictor.stamp.key}], but this "
                                     f"campaign's latency settings measure under [{stamp.key}]; fit or build one "
                                     f"with the same device, runtime, threads and batch")
    finally:
        predictor.close()


def candidate_spec(space: SearchSpace, decisions: dict[str, Any], config: CampaignConfig, num_classes: int) -> ArchSpec:
    """The spec the campaign evaluates for ``decisions`` (classes and resolution of the proxy task)."""
    spec = space.decode(decisions)
    return spec.replace(num_classes=num_classes, resolution=config.evaluator.resolution)


def dataset_classes(config: CampaignConfig) -> int:
    return open_cached(config.evaluator.data_config(config.seed)).num_classes


def one_line_error(error: BaseException) -> str:
    """The root cause of a (Ray-wrapped) evaluation error, on one line."""
    cause = getattr(error, "cause", None) or error
    text = f"{type(cause).__name__}: {cause}" if not isinstance(cause, NasError) else str(cause)
    lines = [line for line in str(text).splitlines() if line.strip()]
    return " ".join(lines[-1:] if "Traceback" in str(text) else lines[:1])[:500] or type(cause).__name__


# ----- the driver ---------------------------------------------------------------------------------

class Campaign:
    """One campaign: controller, storage, Ray job pool. ``run()`` evaluates up to the budget."""

    def __init__(self, config: CampaignConfig, runs_dir: str | Path = "runs", *,
                 log: Callable[[str], None] | None = None,
                 evaluate: Callable[..., Evaluation] = evaluate_candidate,
                 recycle_after: int | None = RECYCLE_AFTER) -> None:
        """``evaluate`` is what the Ray workers run per candidate, with :func:`evaluate_candidate`'s
        arguments, and ``recycle_after`` how many evaluations a worker runs before it is replaced
        (None: never); only benchmarks of the driver itself pass others."""
        self.config = config
        self.evaluate = evaluate
        self.recycle_after = recycle_after
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        check_dataset(config)
        check_predictor(config)
        self.baseline_jobs = baseline_specs(config, dataset_classes(config))  # a bad width: before any write
        self.space = get_space(config.space.name, **dict(config.space.options))
        if config.controller.name not in controller_names():
            raise UnknownControllerError(f"unknown controller {config.controller.name!r}; known: {controller_names()}")
        url = config.storage_url(runs_dir)
        self.rundir = RunDir(config, runs_dir)
        self.rundir.check_identity()
        self.rundir.check_no_legacy_state()
        if not url.startswith("sqlite"):
            check_storage(url)  # before anything is written
        self.num_classes = dataset_classes(config)
        self.rundir.hold()
        self.run_dir = self.rundir.path
        self.driver_id = uuid.uuid4().hex[:12]
        self.lineage = self.rundir.lineage()  # drivers that ran from this run directory before
        if url.startswith("sqlite"):
            check_storage(url)
        self.storage_url = url
        self.controller: StudyController = study_controller(
            config.controller.name, self.space, config.seed, storage=url, study_name=config.name,
            **dict(config.controller.options))
        self.study = CampaignStudy(self.controller.study, self.driver_id)
        self.run_key = self.rundir.run_key(self.driver_id)
        # Read (and check against the study's digests) before this driver writes anything.
        saved_state = (read_state(self.rundir.state_path, digests=self.study.state_digests(self.run_key))
                       if self.rundir.state_path.is_file() else None)
        self.baselines = BaselineStudy(url, config.name) if self.baseline_jobs else None
        self.study.heartbeat()
        self.rundir.add_driver(self.driver_id)
        self.to_rerun: list[tuple[dict[str, Any], int]] = []  # (decisions, the failed trial's number)
        self.rewards: list[float] = []  # finished trials' rewards, best first (screen's top-k threshold)
        if saved_state is not None:
            self._recover(saved_state)
        else:
            self.study.fail_stale(self.lineage)
        self.rundir.save_config()

    # ----- recovery ---------------------------------------------------------------------------

    def _recover(self, state: Any) -> None:
        """Restore the controller saved after the last tell, then settle the trials it missed."""
        self.controller.load_state_dict(state, allow_later_trials=True)
        frozen = {trial.number: trial for trial in self.study.trials()}
        for number in sorted(self.controller.pending_numbers()):
            trial = frozen[number]
            if trial.state == RUNNING:
                # Asked before the last save and running when the driver died: fail it for the
                # controller, and evaluate its architecture again outside the controller.
                self.controller.tell(number, Failed(INTERRUPTED), user_attrs={"error": INTERRUPTED})
                self.to_rerun.append((dict(trial.params), trial.number))
            else:  # told to the study just before the driver died, but not yet to the controller
                self.controller.replay(trial)
        self.study.fail_stale(self.lineage, keep=self.controller.pending_numbers())
        self._save_state()

    def _save_state(self) -> None:
        save_state(self.controller, self.rundir.state_path,
                   record=lambda digest: self.study.record_state_digest(self.run_key, digest))

    # ----- bookkeeping ------------------------------------------------------------------------

    def _value(self, evaluation: Evaluation, reward: float) -> Any:
        if len(self.controller.directions) == 2:
            return (evaluation.accuracy, evaluation.latency_ms)
        return reward

    # ----- the loop ---------------------------------------------------------------------------

    def run(self, *, rerun_failed: bool = False) -> CampaignSummary:
        """Evaluate until the budget of finished trials (or the wall time) is reached."""
        config = self.config
        budget = config.budget.trials
        progress = Progress(budget=budget)
        finished = self.study.finished()
        progress.finished = len(finished)
        progress.failed = len(self.study.failed())
        rewards = [t.user_attrs.get("reward") for t in finished if t.user_attrs.get("reward") is not None]
        progress.best = max(rewards) if rewards else float("nan")
        self.rewards = sorted(rewards, reverse=True)
        if rerun_failed:
            trials = self.study.trials()
            retried = {t.user_attrs.get("rerun_of") for t in trials} | {number for _, number in self.to_rerun}
            self.to_rerun += [(dict(t.params), t.number) for t in trials
                              if t.state.name == "FAIL" and t.params and t.number not in retried]
        started = time.monotonic()
        baselines_missing = self.baselines.missing(self.baseline_jobs) if self.baselines is not None else []
        if progress.finished >= budget and not self.to_rerun and not baselines_missing:
            self.log(f"campaign {config.name!r} already has {progress.finished} finished trials (budget {budget})")
            return self._summary(progress, started, stopped_early=False)

        pool: JobPool[CandidateJob] | None = None  # Ray starts only once something must be evaluated
        waiting: dict[str, list[CandidateJob]] = {}  # arch_id -> jobs waiting on an in-flight twin
        evaluated = self.study.evaluated()
        stopped_early = False
        interrupted = False
        lost: BaseException | None = None  # the storage stopped answering

        def deadline_passed() -> bool:
            return config.budget.wall_time_s is not None and time.monotonic() - started > config.budget.wall_time_s

        def ensure_pool() -> JobPool:
            nonlocal pool
            if pool is None:
                pool = JobPool(self.evaluate, workers=config.workers, num_cpus=config.evaluator.threads,
                               address=config.address, max_retries=config.retries,
                               timeout_s=config.evaluator.timeout_s, what="evaluation",
                               timeout_hint="evaluator.timeout_s", recycle_after=self.recycle_after)
                stop.install()  # after ray.init, which sets its own handlers
            return pool

        def submit(job: CandidateJob) -> None:
            ensure_pool().submit(job, job.spec_yaml, config.evaluator, config.latency, config.seed, self._gate())

        def in_flight() -> list[CandidateJob]:
            return pool.keys() if pool is not None else []

        def queued() -> int:
            return sum(len(jobs) for jobs in waiting.values())

        def open_slots() -> int:
            return budget - progress.finished - len(in_flight()) - queued()

        self.log(f"campaign {config.name!r}: {progress.finished}/{budget} finished; storage {self.storage_url}; "
                 f"{config.workers} worker(s) on Ray")
        limit = config.budget.failure_limit
        timeout = config.evaluator.timeout_s
        # Bounded: every pass submits, finishes or waits up to a second, and no trial runs past its timeout.
        max_passes = int((budget + len(self.to_rerun) + limit + 2) * (timeout + 60) * 2)
        with StopRequest() as stop:
            try:
                if baselines_missing:
                    self._run_baselines(baselines_missing, ensure_pool(), stop)
                for _ in range(max_passes):
                    if stop.requested:
                        raise KeyboardInterrupt
                    # Twins wait at most ``workers`` deep: a policy that keeps proposing an in-flight
                    # architecture would otherwise ask the whole budget ahead, as RUNNING trials.
                    while len(in_flight()) < config.workers and queued() < config.workers and \
                            not deadline_passed() and (self.to_rerun or open_slots() > 0):
                        with self._quiet():
                            job = self._next_job(progress)
                        if job is None:
                            continue
                        arch = job.arch_id
                        if arch in evaluated:
                            number, stored = evaluated[arch]
                            self._finish(job, Evaluation.from_attrs(stored), progress, reused=number)
                            continue
                        if any(other.arch_id == arch for other in in_flight()):
                            waiting.setdefault(str(arch), []).append(job)
                            continue
                        submit(job)
                    if not in_flight():
                        stopped_early = deadline_passed() and progress.finished < budget
                        break
                    assert pool is not None  # something is in flight
                    for outcome in pool.wait(timeout=1.0):
                        with self._quiet():
                            self._settle(outcome, progress, evaluated, waiting, submit, len(in_flight()))
                    self.study.heartbeat()
                else:
                    raise CampaignError(f"the search loop reached its bound of {max_passes} passes; "
                                        "re-run the same command to continue")
            except KeyboardInterrupt:
                interrupted = True
                self.log("interrupted: stopping the running trials; re-run the same command to resume")
            except STORAGE_ERRORS as error:
                lost = error
            finally:
                unfinished = (pool.cancel_all() if pool is not None else []) + \
                    [job for jobs in waiting.values() for job in jobs]
                if lost is None:  # with the storage gone, a resume fails its RUNNING trials instead
                    for job in unfinished:
                        if isinstance(job, CandidateJob):  # a cancelled baseline is simply evaluated next time
                            self._tell_failure(job, INTERRUPTED)
                if pool is not None:
                    pool.close()
                if lost is None:
                    write_tables(trials_frame(self.study.trials()), self.run_dir)
        if interrupted:
            raise KeyboardInterrupt
        if lost is not None:
            cause = str(lost.__cause__ or lost).strip().splitlines()
            raise StorageLostError(f"storage {self.storage_url} stopped answering: "
                                   f"{cause[0] if cause else type(lost).__name__}")
        return self._summary(progress, started, stopped_early)

    def close(self) -> None:
        """Release the run directory (another driver, or a resumed one, may then hold it)."""
        self.rundir.release()

    def _run_baselines(self, jobs: list[BaselineJob], pool: JobPool, stop: "StopRequest") -> None:
        """Evaluate the missing baselines (``workers`` at a time) before the search, as its trials are
        evaluated; each is stored as it finishes. Under ``screen`` every baseline is measured."""
        config = self.config
        assert self.baselines is not None
        widths = ", ".join(f"{job.width:g}" for job in jobs)
        self.log(f"baselines: the {config.space.name} space's reference at width {widths} "
                 f"({len(jobs)} of {len(self.baseline_jobs)} to evaluate), before the search")
        work = [(job, (job.spec_yaml, config.evaluator, config.latency, config.seed, None)) for job in jobs]
        for outcome in pool.map_unordered(work):
            job = outcome.key
            if outcome.error is not None:
                message = one_line_error(outcome.error)
                self.baselines.record(job, None, None, message)
                self.log(f"baseline x{job.width:g} failed: {message} (tried again when the campaign resumes)")
            else:
                evaluation: Evaluation = outcome.value
                reward = config.reward.score(evaluation.accuracy, evaluation.latency_ms)
                self.baselines.record(job, evaluation.attrs(), reward)
                self.log(f"baseline x{job.width:g}: accuracy {evaluation.accuracy:.4f}, latency "
                         f"{evaluation.latency_ms:.3f} ms, reward {reward:.4f}")
            if stop.requested:
                raise KeyboardInterrupt

    def _gate(self) -> ScreenGate | None:
        """``screen``: the reward and the top-k threshold a new evaluation must be able to reach."""
        latency = self.config.latency
        if latency.source != "screen":
            return None
        threshold = self.rewards[latency.screen_top_k - 1] if len(self.rewards) >= latency.screen_top_k else None
        return ScreenGate(self.config.reward, threshold)

    def _quiet(self) -> contextlib.AbstractContextManager[None]:
        """The driver's own computing (the controller's ask and tell, such as the RL policy's
        sampling and PPO update, and the bookkeeping) holds the device lock shared, as training
        does, so a measurement on this host never times beside it."""
        if self.config.latency.source == "lut":
            return contextlib.nullcontext()
        return device_lock(device_name(self.config.latency.device), exclusive=False)

    def _settle(self, outcome: Outcome[CandidateJob], progress: Progress,
                evaluated: dict[str, tuple[int, dict[str, Any]]], waiting: dict[str, list[CandidateJob]],
                submit: Callable[[CandidateJob], None], in_flight: int) -> None:
        """Record a finished evaluation (and its waiting twins), or fail its trial."""
        job = outcome.key
        twins = waiting.pop(str(job.arch_id), [])
        if outcome.error is not None:
            self._fail(job, outcome.error, progress)
            if twins:  # the next twin evaluates it; the others keep waiting on that one
                if twins[1:]:
                    waiting[str(job.arch_id)] = twins[1:]
                submit(twins[0])
            return
        evaluation: Evaluation = outcome.value
        attrs = self._finish(job, evaluation, progress, peak_rss_mb=outcome.peak_rss_mb)
        evaluated[str(job.arch_id)] = (job.trial, attrs)
        for twin in twins:
            self._finish(twin, evaluation, progress, reused=job.trial)
        self.log(progress.line(self.config.workers, in_flight))

    def _next_job(self, progress: Progress) -> CandidateJob | None:
        """Ask the controller (or take a re-run) and describe the evaluation; None if the proposal
        cannot even be built (the trial then FAILs with the reason)."""
        rerun_of = None
        if self.to_rerun:
            decisions, rerun_of = self.to_rerun.pop(0)
            trial = self.controller.ask_fixed(decisions)
        else:
            trial = self.controller.ask()
            decisions = dict(trial.decisions)
        proposal = ProposalAttrs(decisions=decisions, seed=self.config.seed, driver=self.driver_id, rerun_of=rerun_of)
        try:
            spec = candidate_spec(self.space, decisions, self.config, self.num_classes)
            counts = profile(spec)
        except ValueError as error:  # decisions the space cannot turn into a network
            self.controller.set_user_attrs(trial.number, proposal.attrs())
            self._fail(CandidateJob(trial.number, None, ""), error, progress)
            return None
        spec_yaml = spec.to_yaml()
        proposal = dataclasses.replace(proposal, spec_yaml=spec_yaml, arch_id=spec.arch_id, params=counts.params,
                                       madds=counts.madds)
        self.controller.set_user_attrs(trial.number, proposal.attrs())
        return CandidateJob(trial.number, spec.arch_id, spec_yaml)

    def _finish(self, job: CandidateJob, evaluation: Evaluation, progress: Progress,
                reused: int | None = None, peak_rss_mb: float | None = None) -> dict[str, Any]:
        """Score an evaluation and tell it; returns the attributes stored on the trial."""
        reward = self.config.reward.score(evaluation.accuracy, evaluation.latency_ms)
        attrs = {**evaluation.attrs(), "reward": reward}
        if peak_rss_mb is not None:
            attrs["peak_rss_mb"] = round(peak_rss_mb, 1)
        if reused is not None:
            attrs["reused_from"] = reused
            progress.reused += 1
        else:
            progress.durations.append(time.monotonic() - job.submitted)
            if evaluation.latency_precise is False:
                progress.imprecise += 1
                self.log(f"trial {job.trial}: latency {evaluation.latency_ms:.3f} ms is imprecise (interval "
                         f"{evaluation.latency_ci_low_ms:.3f}-{evaluation.latency_ci_high_ms:.3f} ms, wider than the "
                         "tolerance after a second measurement); stored with latency_precise = false")
        self.controller.tell(job.trial, self._value(evaluation, reward), user_attrs=attrs)
        self._save_state()
        bisect.insort(self.rewards, reward, key=lambda value: -value)
        progress.predicted += evaluation.screen == "predicted"
        progress.finished += 1
        progress.best = reward if progress.best != progress.best else max(progress.best, reward)
        return attrs

    def _fail(self, job: CandidateJob, error: BaseException, progress: Progress) -> None:
        message = one_line_error(error)
        self._tell_failure(job, message)
        progress.failed += 1
        progress.failed_now += 1
        self.log(f"trial {job.trial} failed: {message}")
        limit = self.config.budget.failure_limit
        if progress.failed_now > limit:
            raise CampaignError(f"{progress.failed_now} trials failed in this run (budget.max_failed {limit}); "
                                f"the last: {message}")

    def _tell_failure(self, job: CandidateJob, message: str) -> None:
        self.controller.tell(job.trial, Failed(message), user_attrs={"error": message})
        self._save_state()

    def _summary(self, progress: Progress, started: float, stopped_early: bool) -> CampaignSummary:
        finished = self.study.finished()
        best = max(finished, key=lambda t: t.user_attrs.get("reward", -math.inf), default=None)
        evaluated = sum(1 for t in finished if "reused_from" not in t.user_attrs)
        comparison = None
        if self.baselines is not None:
            comparison = compare(front_of(trials_frame(self.study.trials())), self.baselines.points())
        return CampaignSummary(run_dir=self.run_dir, finished=len(finished), failed=progress.failed,
                               evaluated=evaluated,
                               best_reward=best.user_attrs.get("reward", math.nan) if best else math.nan,
                               best_trial=best.number if best else None,
                               wall_seconds=time.monotonic() - started, stopped_early=stopped_early,
                               comparison=comparison)


def run_campaign(config: CampaignConfig, runs_dir: str | Path = "runs", *, rerun_failed: bool = False,
                 log: Callable[[str], None] | None = None, patience_s: float = STORAGE_PATIENCE_S,
                 reconnects: int = STORAGE_RECONNECTS) -> CampaignSummary:
    """Run a campaign to its budget, riding out storage outages: when the storage stops answering
    (a database server restarted), wait up to ``patience_s`` for it, then resume as a re-run of
    the command would: the trials that were in flight fail as interrupted and are evaluated again,
    finished ones are kept. At most ``reconnects`` outages; the next one stops with the error."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    for attempt in range(reconnects + 1):
        campaign = Campaign(config, runs_dir, log=log)
        try:
            return campaign.run(rerun_failed=rerun_failed and attempt == 0)
        except StorageLostError as error:
            if attempt == reconnects:
                raise StorageLostError(f"{error}; {reconnects} outages already ridden out. Finished trials are "
                                       "kept: re-run the same command to resume") from None
            log(f"{error}; waiting up to {patience_s:.0f} s for it, then resuming")
            wait_for_storage(campaign.storage_url, patience_s, log)
        finally:
            campaign.close()
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


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
