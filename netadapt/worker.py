"""Evaluating proposals: surgery, short-term fine-tune, held-out accuracy. In this process or on Ray.

A :class:`ProposalJob` is plain data (spec YAML, checkpoint paths, data config), so it travels to
Ray workers unchanged; the worker writes the fine-tuned checkpoint itself and returns a
:class:`ProposalOutcome`. Training holds the device lock *shared*; a latency measurement holds it
exclusively and so never overlaps a fine-tune.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from nas.data import DataConfig


@dataclass(frozen=True)
class FineTuneSettings:
    """Short-term fine-tune of every proposal (a constant LR, as in NetAdapt)."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 4e-5
    eval_batch: int = 512  # one batch holds the whole digits held-out split: one compile

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ValueError(f"netadapt.{name}: must be a {'non-negative' if name == 'steps' else 'positive'} "
                                 f"integer (got {value!r})")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr <= 10:
            raise ValueError(f"netadapt.lr: must be in (0, 10] (got {self.lr!r})")


@dataclass(frozen=True)
class ProposalJob:
    """Everything a worker needs to evaluate one proposal."""

    key: str
    parent_spec: str  # YAML
    parent_ckpt: str
    spec: str  # YAML
    out_ckpt: str
    data: DataConfig
    settings: FineTuneSettings
    seed: int
    first_epoch: int = 0
    device: str = "CPU"
    threads: int | None = None


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

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_DATA: dict[DataConfig, Any] = {}


def open_cached(config: DataConfig) -> Any:
    """The opened dataset, once per process (Ray workers are reused across proposals)."""
    from nas.data import open_data

    if config not in _DATA:
        _DATA[config] = open_data(config)
    return _DATA[config]


class EpochShift:
    """A view of a dataset whose epochs start at ``first``: successive NetAdapt iterations
    fine-tune on fresh batches, while all proposals of one iteration see the same ones."""

    def __init__(self, data: Any, first: int) -> None:
        self.data = data
        self.first = first

    def train(self, batch_size: int, *, epoch: int = 0, **options: Any) -> Any:
        return self.data.train(batch_size, epoch=self.first + epoch, **options)

    def steps_per_epoch(self, batch_size: int, shards: int = 1) -> int:
        return self.data.steps_per_epoch(batch_size, shards)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)


def epochs_per_iteration(data: Any, settings: FineTuneSettings) -> int:
    """How many data epochs one short-term fine-tune spans."""
    return max(1, math.ceil(settings.steps / max(1, data.steps_per_epoch(settings.batch_size))))


def train_config(settings: FineTuneSettings, seed: int) -> Any:
    from nas.train import TrainConfig

    return TrainConfig(epochs=1, batch_size=settings.batch_size, lr=settings.lr, base_batch=settings.batch_size,
                       momentum=settings.momentum, weight_decay=settings.weight_decay, schedule="constant",
                       seed=seed)


def evaluate_proposal(job: ProposalJob) -> ProposalOutcome:
    """Surgery from the parent checkpoint, short-term fine-tune, held-out evaluation, save."""
    import mindspore as ms
    import numpy as np

    from netadapt.surgery import shrink_network
    from nas.checkpoint import read_checkpoint, save_weights
    from nas.spec import ArchSpec
    from nas.train import TrainingDiverged, configure_threads, evaluate, fine_tune

    started = time.perf_counter()
    configure_threads(job.threads)
    ms.set_context(mode=ms.GRAPH_MODE)
    parent, spec = ArchSpec.from_yaml(job.parent_spec), ArchSpec.from_yaml(job.spec)
    try:
        data = open_cached(job.data)
        ms.set_seed(job.seed)
        np.random.seed(job.seed % 2**32)
        weights = {name: value for name, value in read_checkpoint(job.parent_ckpt).items()
                   if hasattr(value, "asnumpy")}
        net = shrink_network(parent, weights, spec)
        train_loss = float("nan")
        if job.settings.steps:  # the device lock is held shared per step (a measurement waits one step)
            train_loss = fine_tune(net, EpochShift(data, job.first_epoch), train_config(job.settings, job.seed),
                                   job.settings.steps, device_lock=job.device)
        result = evaluate(net, data.held_out(job.settings.eval_batch), device_lock=job.device)
        save_weights(net, job.out_ckpt, spec)
    except TrainingDiverged as error:
        return ProposalOutcome(job.key, float("nan"), float("nan"), float("nan"), float("nan"),
                               time.perf_counter() - started, "", f"TrainingDiverged: {error}")
    return ProposalOutcome(job.key, result.top1, result.top5, result.loss, train_loss,
                           time.perf_counter() - started, job.out_ckpt)


def _failed(job: ProposalJob, error: BaseException, started: float) -> ProposalOutcome:
    text = " ".join(f"{type(error).__name__}: {error}".split())[:500]
    return ProposalOutcome(job.key, float("nan"), float("nan"), float("nan"), float("nan"),
                           time.perf_counter() - started, "", text)


def _guarded(job: ProposalJob) -> ProposalOutcome:
    started = time.perf_counter()
    try:
        return evaluate_proposal(job)
    except Exception as error:  # a failed proposal is a result of the iteration, not a crash of the run
        if os.environ.get("NAS_DEBUG"):
            traceback.print_exc()
        return _failed(job, error, started)


def run_inline(jobs: Sequence[ProposalJob]) -> Iterator[ProposalOutcome]:
    """Evaluate the jobs one after another in this process."""
    for job in jobs:
        yield _guarded(job)


class RayPool:
    """Evaluates jobs on Ray, ``workers`` at a time (one CPU each). Starts a local Ray instance
    (``ray.init(num_cpus=workers, include_dashboard=False)``) unless one is running or an
    ``address`` is given; shuts down only what it started."""

    def __init__(self, workers: int, address: str | None = None, job_timeout_s: float = 7200.0) -> None:
        from nas.raycluster import connect_ray, import_ray

        self.ray = ray = import_ray()
        self.workers = workers
        self.job_timeout_s = job_timeout_s
        self.started = connect_ray(address, workers)
        self.remote = ray.remote(num_cpus=1, max_retries=0)(_guarded)

    def run(self, jobs: Sequence[ProposalJob]) -> Iterator[ProposalOutcome]:
        """Yield outcomes as they finish (at most ``workers`` jobs in flight)."""
        pending = list(jobs)
        running: dict[Any, tuple[ProposalJob, float]] = {}
        # Bounded: every job is submitted once and finishes, fails or times out once.
        while pending or running:
            while pending and len(running) < self.workers:
                job = pending.pop(0)
                running[self.remote.remote(job)] = (job, time.perf_counter())
            done, _ = self.ray.wait(list(running), num_returns=1, timeout=5.0)
            for ref in done:
                job, started = running.pop(ref)
                try:
                    yield self.ray.get(ref)
                except Exception as error:  # the worker process died
                    yield _failed(job, error, started)
            for ref, (job, started) in list(running.items()):
                if time.perf_counter() - started > self.job_timeout_s:
                    self.ray.cancel(ref, force=True)
                    running.pop(ref)
                    yield _failed(job, TimeoutError(f"fine-tune ran past {self.job_timeout_s:g} s"), started)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


def make_runner(workers: int, address: str | None = None) -> tuple[Callable[[Sequence[ProposalJob]], Iterator[ProposalOutcome]], Callable[[], None]]:
    """``(run, close)``: inline for one worker (no Ray), a :class:`RayPool` otherwise."""
    if workers <= 1 and address is None:
        return run_inline, lambda: None
    pool = RayPool(max(1, workers), address)
    return pool.run, pool.close
