"""The proxy task that scores candidates, and NetAdapt's short-term fine-tune.

Proxy training holds the device lock *shared* around every step and evaluation batch, so a
latency measurement on the same device never overlaps it and waits at most one step.

The training steps run compiled (GRAPH mode). The scoring after them (the batch-norm
recalibration and the held-out evaluation) runs op by op (PYNATIVE) when it is at most
:data:`SCORE_PYNATIVE_MAX_BATCHES` forward passes: in GRAPH mode it compiles three graphs (the
recalibration's two batch-norm momenta and the evaluation), which on a small held-out set costs
more than the passes themselves. Both modes compute the same numbers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import mindspore as ms
import numpy as np

from nas.models.builder import build_network
from nas.spec.arch import ArchSpec
from nas.training.config import TrainConfig
from nas.training.engine import (
    Trainer,
    configure_threads,
    evaluate,
    recalibrate_batch_norm,
    release_compiled,
    set_execution_mode,
)

RECALIBRATION_BATCHES = 50  # batches that recompute the batch-norm statistics before scoring
# Scoring of at most this many forward passes (recalibration plus held-out batches) runs op by op
# (PYNATIVE); above it, compiled. Chosen by `python -m bench.score` (README: "Proxy scoring").
SCORE_PYNATIVE_MAX_BATCHES = 100


@dataclass(frozen=True)
class ProxyResult:
    """What the proxy task reports for one candidate."""

    top1: float
    top5: float
    held_out_loss: float
    train_loss: float
    epochs: int
    steps: int
    train_seconds: float
    eval_seconds: float


def train_proxy(spec: ArchSpec, data: Any, config: TrainConfig, *, device: str = "CPU",
                threads: int | None = None, lock_timeout: float | None = None) -> ProxyResult:
    """Train a fresh network of ``spec`` on ``data``'s training split and score it on held-out data.

    Before scoring, the batch-norm statistics are recomputed from training batches
    (:func:`~nas.training.engine.recalibrate_batch_norm`): after a proxy's few hundred steps, the
    moving statistics of a slow batch norm are still mostly their initial values, and the score
    would rank how fast they converge rather than the network.

    ``device`` is locked shared per step; pass ``None`` to train without taking the lock.
    """
    configure_threads(threads)
    set_execution_mode("graph")
    try:
        return _train_and_score(spec, data, config, device, lock_timeout)
    finally:
        release_compiled()  # a worker trains one network per job: keep none of their graphs


def _train_and_score(spec: ArchSpec, data: Any, config: TrainConfig, device: str | None,
                     lock_timeout: float | None) -> ProxyResult:
    ms.set_seed(config.seed)
    np.random.seed(config.seed)
    net = build_network(spec, num_classes=data.num_classes, seed=config.seed)
    trainer = Trainer(net, config, data.steps_per_epoch(config.batch_size), device_lock=device,
                      lock_timeout=lock_timeout)
    started = time.perf_counter()
    logs = trainer.fit(lambda epoch: data.train(config.batch_size, epoch=epoch))
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if trainer.ema is not None:
        trainer.ema.swap()
    set_execution_mode(score_mode(data, config.batch_size))
    recalibrate_batch_norm(net, data.train(config.batch_size, epoch=config.epochs), RECALIBRATION_BATCHES,
                           device_lock=device)
    result = evaluate(net, data.held_out(score_batch(config.batch_size)), device_lock=device)
    eval_seconds = time.perf_counter() - started
    return ProxyResult(top1=result.top1, top5=result.top5, held_out_loss=result.loss, train_loss=logs[-1].loss,
                       epochs=len(logs), steps=trainer.global_step, train_seconds=train_seconds,
                       eval_seconds=eval_seconds)


def score_batch(batch_size: int) -> int:
    """The held-out evaluation's batch size for a proxy trained at ``batch_size``."""
    return max(64, batch_size)


def score_mode(data: Any, batch_size: int) -> str:
    """The execution mode of a proxy's scoring: ``pynative`` for at most
    :data:`SCORE_PYNATIVE_MAX_BATCHES` forward passes, else ``graph``."""
    recalibration = min(RECALIBRATION_BATCHES, data.steps_per_epoch(batch_size))
    held_out = math.ceil(data.sizes["held_out"] / score_batch(batch_size))
    return "pynative" if recalibration + held_out <= SCORE_PYNATIVE_MAX_BATCHES else "graph"


@dataclass(frozen=True)
class FineTune:
    """A short fine-tune: its mean training loss, the steps taken, and where its time went: the
    training graph's compile, and the steps themselves (data loading included)."""

    loss: float
    steps: int
    compile_seconds: float
    step_seconds: float


def fine_tune(net: Any, data: Any, config: TrainConfig, steps: int, *, device_lock: str | None = None) -> FineTune:
    """Train ``net`` in place for ``steps`` steps at a constant LR (NetAdapt's short-term fine-tune).

    ``device_lock`` names a device to hold shared around every step (see :class:`Trainer`).
    """
    started = time.perf_counter()
    constant = config.replace(schedule="constant", warmup_epochs=0.0, epochs=1)
    per_epoch = data.steps_per_epoch(config.batch_size)
    trainer = Trainer(net, constant, max(steps, 1), device_lock=device_lock)
    done = 0
    losses = []
    for epoch in range(max(1, math.ceil(steps / max(1, per_epoch)))):  # bounded: enough epochs for ``steps``
        batches = data.train(config.batch_size, epoch=epoch).create_tuple_iterator(num_epochs=1)
        mean, count, _ = trainer.run_steps(batches, steps - done)
        done += count
        if count:
            losses.append(mean)
        if done >= steps:
            break
    loss = float(np.mean(losses)) if losses else float("nan")
    compiled = trainer.compile_seconds
    return FineTune(loss, done, compiled, time.perf_counter() - started - compiled)
