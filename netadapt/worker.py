"""Evaluating proposals: surgery, short-term fine-tune, held-out accuracy. In this process or on Ray.

A :class:`ProposalJob` is plain data (spec YAML, checkpoint paths, data config), so it travels to
Ray workers unchanged; the worker writes the fine-tuned checkpoint itself and returns a
:class:`ProposalOutcome`. Training holds the device lock *shared*; a latency measurement holds it
exclusively and so never overlaps a fine-tune. Ray runs go through the one bounded job pool
(:class:`nas.runtime.pool.JobPool`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import mindspore as ms
import numpy as np

from nas.models.builder import build_network
from nas.models.checkpoint import load_weights, read_checkpoint, save_weights
from nas.runtime.devicelock import device_lock
from nas.runtime.pool import JobPool
from nas.spec.arch import ArchSpec
from nas.training.config import DataConfig, TrainConfig
from nas.training.data import Data, open_cached
from nas.training.engine import TrainingDiverged, configure_threads, evaluate, release_compiled, set_execution_mode
from nas.training.proxy import fine_tune
from netadapt.channels import Key
from netadapt.surgery import shrink_weights

JOB_TIMEOUT_S = 7200.0
# A fine-tune compiles a fresh training graph per proposal, and MindSpore keeps every graph of a
# process: at 224 px a worker grew to 13 GB within 4 proposals. Replace it every 2 proposals.
RECYCLE_AFTER = 2


@dataclass(frozen=True)
class ProposalJob:
    """Everything a worker needs to evaluate one proposal."""

    key: str
    parent_spec: str  # YAML
    parent_ckpt: str
    spec: str  # YAML
    out_ckpt: str
    data: DataConfig
    train: TrainConfig  # the short-term fine-tune (a constant LR)
    steps: int
    eval_batch: int
    seed: int
    first_epoch: int = 0
    device: str = "CPU"
    threads: int | None = None
    mode: str = "graph"  # the fine-tune's execution mode: graph (compiled per shape) or pynative (op by op)


@dataclass(frozen=True)
class ProposalOutcome:
    """A proposal's held-out accuracy after its short-term fine-tune (or the error that stopped it)."""

    key: str
    top1: float
    top5: float
    loss: float
    train_loss: float
    seconds: float
    ckpt: str
    error: str | None = None
    peak_rss_mb: float | None = None  # the worker's peak resident memory during the job (on Ray)
    # Where ``seconds`` went: data and surgery, the training graph's compile, the steps, the evaluation
    # (the rest: waiting for the device lock, saving the checkpoint).
    setup_s: float = math.nan
    compile_s: float = math.nan
    steps_s: float = math.nan
    eval_s: float = math.nan

    def split(self) -> str:
        """``setup 1.2 s, compile 8.0 s, steps 2.1 s, eval 0.9 s``, or "" when not recorded."""
        parts = (("setup", self.setup_s), ("compile", self.compile_s), ("steps", self.steps_s), ("eval", self.eval_s))
        if not all(math.isfinite(value) for _, value in parts):
            return ""
        return ", ".join(f"{name} {value:.1f} s" for name, value in parts)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class EpochShift:
    """A view of a dataset whose epochs start at ``first``: successive NetAdapt iterations
    fine-tune on fresh batches, while all proposals of one iteration see the same ones."""

    def __init__(self, data: Data, first: int) -> None:
        self.data = data
        self.first = first

    def train(self, batch_size: int, *, epoch: int = 0, **options: Any) -> Any:
        return self.data.train(batch_size, epoch=self.first + epoch, **options)

    def steps_per_epoch(self, batch_size: int, shards: int = 1) -> int:
        return self.data.steps_per_epoch(batch_size, shards)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)


def epochs_per_iteration(data: Any, steps: int, batch_size: int) -> int:
    """How many data epochs one short-term fine-tune of ``steps`` steps spans."""
    return max(1, math.ceil(steps / max(1, data.steps_per_epoch(batch_size))))


def shrink_network(old: ArchSpec, params: Any, new: ArchSpec, keeps: Mapping[Key, np.ndarray] | None = None) -> Any:
    """The MindSpore network of ``new`` carrying the surviving weights of ``old``
    (:func:`netadapt.surgery.shrink_weights`).

    ``params`` is ``old``'s network or its parameters (name -> array, Parameter or Tensor).
    """
    if hasattr(params, "parameters_and_names"):
        params = {name: param.asnumpy() for name, param in params.parameters_and_names()}
    sliced = shrink_weights(old, params, new, keeps)
    net = build_network(new)
    load_weights(net, {name: ms.Parameter(ms.Tensor(value), name=name) for name, value in sliced.items()},
                 origin=f"surgery {old.arch_id} -> {new.arch_id}")
    return net


def evaluate_proposal(job: ProposalJob) -> ProposalOutcome:
    """Surgery from the parent checkpoint, short-term fine-tune, held-out evaluation, save."""
    started = time.perf_counter()
    configure_threads(job.threads)
    set_execution_mode(job.mode)
    parent, spec = ArchSpec.from_yaml(job.parent_spec), ArchSpec.from_yaml(job.spec)
    # Quiet measurement: the whole job (data, surgery, compiling, steps, evaluation) holds the
    # device lock shared, so a latency measurement on this host never times beside any of it.
    quiet = contextlib.nullcontext() if job.device is None else device_lock(job.device, exclusive=False)
    try:
        with quiet:
            ready = time.perf_counter()  # the device lock's wait is not the proposal's cost
            data = open_cached(job.data)
            ms.set_seed(job.seed)
            np.random.seed(job.seed % 2**32)
            weights = {name: value for name, value in read_checkpoint(job.parent_ckpt).items()
                       if hasattr(value, "asnumpy")}
            net = shrink_network(parent, weights, spec)
            setup_s = time.perf_counter() - ready
            train_loss, compile_s, steps_s = float("nan"), 0.0, 0.0
            if job.steps:
                tuned = fine_tune(net, EpochShift(data, job.first_epoch), job.train.replace(seed=job.seed),
                                  job.steps, device_lock=None)
                train_loss, compile_s, steps_s = tuned.loss, tuned.compile_seconds, tuned.step_seconds
            evaluated = time.perf_counter()
            result = evaluate(net, data.held_out(job.eval_batch), device_lock=None)
            eval_s = time.perf_counter() - evaluated
            save_weights(net, job.out_ckpt, spec)
    except TrainingDiverged as error:
        return ProposalOutcome(job.key, math.nan, math.nan, math.nan, math.nan, time.perf_counter() - started, "",
                               f"TrainingDiverged: {error}")
    return ProposalOutcome(job.key, result.top1, result.top5, result.loss, train_loss,
                           time.perf_counter() - started, job.out_ckpt, setup_s=setup_s, compile_s=compile_s,
                           steps_s=steps_s, eval_s=eval_s)


def _failed(job: ProposalJob, error: BaseException, seconds: float) -> ProposalOutcome:
    text = " ".join(f"{type(error).__name__}: {error}".split())[:500]
    return ProposalOutcome(job.key, math.nan, math.nan, math.nan, math.nan, seconds, "", text)


def run_proposal(job: ProposalJob) -> ProposalOutcome:
    """One proposal as a NetAdapt worker runs it: a failure becomes the outcome, and the compiled
    graphs are released afterwards."""
    started = time.perf_counter()
    try:
        return evaluate_proposal(job)
    except Exception as error:  # a failed proposal is a result of the iteration, not a crash of the run
        if os.environ.get("NAS_DEBUG"):
            traceback.print_exc()
        return _failed(job, error, time.perf_counter() - started)
    finally:
        release_compiled()  # the proposal's network and graphs are done with


def run_inline(jobs: Sequence[ProposalJob]) -> Iterator[ProposalOutcome]:
    """Evaluate the jobs one after another in this process."""
    for job in jobs:
        yield run_proposal(job)


class RayRunner:
    """Evaluates jobs on Ray, ``workers`` at a time (one CPU each), through the job pool."""

    def __init__(self, workers: int, address: str | None = None, job_timeout_s: float = JOB_TIMEOUT_S) -> None:
        self.pool: JobPool[ProposalJob] = JobPool(run_proposal, workers=workers, address=address,
                                                  timeout_s=job_timeout_s, what="fine-tune",
                                                  recycle_after=RECYCLE_AFTER)

    def run(self, jobs: Sequence[ProposalJob]) -> Iterator[ProposalOutcome]:
        """Yield outcomes as they finish; a worker that died or timed out fails only its job."""
        started = time.perf_counter()
        for outcome in self.pool.map_unordered((job, (job,)) for job in jobs):
            if outcome.ok:
                yield dataclasses.replace(outcome.value, peak_rss_mb=outcome.peak_rss_mb)
            else:
                assert outcome.error is not None
                yield _failed(outcome.key, outcome.error, time.perf_counter() - started)

    def close(self) -> None:
        self.pool.close()


def make_runner(workers: int, address: str | None = None) -> tuple[Callable[[Sequence[ProposalJob]],
                                                                           Iterator[ProposalOutcome]],
                                                                  Callable[[], None]]:
    """``(run, close)``: inline for one worker (no Ray), the job pool on Ray otherwise."""
    if workers <= 1 and address is None:
        return run_inline, lambda: None
    runner = RayRunner(max(1, workers), address)
    return runner.run, runner.close
