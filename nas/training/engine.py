"""The training engine (MindSpore): one engine serves the proxy task, fine-tunes and full training.

A :class:`~nas.training.config.TrainConfig` holds the recipe (optimizer, LR schedule
scaled linearly with the global batch, weight decay without decay on BN and biases, label
smoothing, EMA of the weights, AMP level). :class:`Trainer` runs epochs of a GRAPH-mode train
step and checks the loss at every step: a NaN or exploding loss raises
:class:`TrainingDiverged`, which a campaign records as the trial's failure reason.

Proxy training holds the device lock *shared* around every step and evaluation batch (see
:mod:`nas.runtime.devicelock`), so latency is never measured beside it, and a measurement waits at most
one step.
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from nas.runtime.devicelock import device_lock as hold_device
from nas.spec.errors import NasError
from nas.training.config import EXECUTION_MODES, TrainConfig


class TrainingDiverged(NasError):
    """The loss became NaN, infinite or larger than ``max_loss``."""


def learning_rates(config: TrainConfig, steps_per_epoch: int, global_batch: int,
                   epochs: int | None = None) -> np.ndarray:
    """The LR of every step: linear warm-up, then cosine, exponential (staircase) or constant."""
    epochs = config.epochs if epochs is None else epochs
    peak = config.lr * global_batch / config.lr_batch
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total, int(round(config.warmup_epochs * steps_per_epoch)))
    rates = np.empty(total, np.float32)
    for step in range(total):
        if step < warmup:
            rates[step] = peak * (step + 1) / warmup
            continue
        progress = (step - warmup) / max(1, total - warmup)
        if config.schedule == "cosine":
            rates[step] = config.min_lr + (peak - config.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        elif config.schedule == "exponential":
            epoch = (step - warmup) / steps_per_epoch
            rates[step] = max(config.min_lr, peak * config.decay_rate ** math.floor(epoch / config.decay_epochs))
        else:
            rates[step] = peak
    return rates


def release_compiled() -> None:
    """Free every graph compiled in this process and the device memory MindSpore cached for them.

    MindSpore keeps each compiled graph (and its runtime memory) for the life of the process, so
    a worker that trains one new network per job grows by every network it trained: about 110 MiB
    per proxy job at 16 px here. Call this when a job's networks are done with; anything run
    later compiles again."""
    gc.collect()
    ms.ms_memory_recycle()


def set_execution_mode(mode: str) -> None:
    """Run what follows in ``mode``, one of :data:`~nas.training.config.EXECUTION_MODES`."""
    if mode not in EXECUTION_MODES:
        raise NasError(f"execution mode {mode!r} is not one of {', '.join(EXECUTION_MODES)}")
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)


def configure_threads(threads: int | None) -> None:
    """Limit MindSpore's CPU kernel threads for this process (settable once per process)."""
    if not threads:
        return
    try:
        ms.device_context.cpu.op_tuning.threads_num(int(threads))
    except RuntimeError:
        pass  # already set in this process


def _parameter_groups(net: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for param in net.trainable_params():
        name = param.name
        if name.endswith(("gamma", "beta", "bias")) or len(param.shape) <= 1:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(net: Any, config: TrainConfig, rates: np.ndarray) -> Any:
    """The recipe's optimizer over ``net``'s trainable parameters, no decay on BN and biases."""
    groups = _parameter_groups(net, config.weight_decay)
    lr = ms.Tensor(rates)
    if config.optimizer == "rmsprop":
        return nn.RMSProp(groups, learning_rate=lr, decay=config.rmsprop_decay, momentum=config.momentum,
                          epsilon=config.rmsprop_epsilon)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return nn.Momentum(groups, learning_rate=lr, momentum=momentum)


class WeightEMA:
    """Exponential moving average of the trainable weights, kept beside the network."""

    def __init__(self, net: Any, decay: float) -> None:
        self.decay = decay
        params = net.trainable_params()
        self.shadow = ms.ParameterTuple([ms.Parameter(p.data.copy(), name=f"ema.{p.name}", requires_grad=False)
                                         for p in params])
        self.params = ms.ParameterTuple(params)

        class _Update(nn.Cell):
            def __init__(self, shadow: Any, live: Any, decay: float) -> None:
                super().__init__()
                self.shadow, self.live, self.decay = shadow, live, decay

            def construct(self) -> Any:
                for index in range(len(self.shadow)):
                    ops.assign(self.shadow[index], self.shadow[index] * self.decay
                               + self.live[index] * (1.0 - self.decay))
                return True

        self.update = _Update(self.shadow, self.params, decay)

    def swap(self) -> None:
        """Exchange live and averaged weights (call twice to undo)."""
        for shadow, live in zip(self.shadow, self.params):
            held = live.data.copy()
            live.set_data(shadow.data)
            shadow.set_data(held)


def _compile(cell: Any, *inputs: Any) -> None:
    """Compile ``cell``'s graph for these inputs without running it (GRAPH mode only)."""
    if ms.get_context("mode") == ms.GRAPH_MODE:
        cell.compile(*inputs)


@dataclass(frozen=True)
class Evaluation:
    top1: float
    top5: float
    loss: float
    images: int


def evaluate(net: Any, dataset: Any, *, device_lock: str | None = None) -> Evaluation:
    """Top-1, top-5 and cross-entropy of ``net`` in eval mode over a batched dataset.

    ``device_lock`` names a device to hold shared around every batch.
    """
    was_training = net.training
    net.set_train(False)
    try:
        return _evaluate(net, dataset, device_lock)
    finally:
        net.set_train(was_training)


def _evaluate(net: Any, dataset: Any, device_lock: str | None) -> Evaluation:
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        if device_lock is None:
            logits = net(images).asnumpy().astype(np.float64)
        else:
            if seen == 0:
                _compile(net, images)
            with hold_device(device_lock, exclusive=False):
                logits = net(images).asnumpy().astype(np.float64)
        target = labels.asnumpy().astype(np.int64)
        order = np.argsort(-logits, axis=1)
        correct1 += int((order[:, 0] == target).sum())
        correct5 += int((order[:, :5] == target[:, None]).any(axis=1).sum())
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss_sum += float(-log_probs[np.arange(len(target)), target].sum())
        seen += len(target)
    if seen == 0:
        raise NasError("evaluation dataset is empty")
    return Evaluation(top1=correct1 / seen, top5=correct5 / seen, loss=loss_sum / seen, images=seen)


class _Forward(nn.Cell):
    """A forward pass only, in a cell of its own so that it compiles afresh with the current primitives."""

    def __init__(self, net: Any) -> None:
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, images: Any) -> Any:
        return self.net(images)


def recalibrate_batch_norm(net: Any, dataset: Any, batches: int = 50, momentum: float = 0.1, *,
                           device_lock: str | None = None) -> int:
    """Recompute every batch norm's moving mean and variance from ``batches`` batches of ``dataset``
    (training images) with the weights as they are; return the batches used.

    A short training leaves the moving statistics of slow batch norms (MnasNet-A1's momentum is
    0.99: a batch moves them by 1%) mostly at their initial 0 and 1, so an evaluation in inference
    mode scores a network that never ran. The first batch sets the statistics outright (nothing of
    the old ones is kept: a residual of the initial variance 1 would swamp a layer whose variance
    is 1e-4); the following ones are averaged in with ``momentum`` each. Weights do not change.
    """
    norms = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    if not norms:
        return 0
    saved = [cell.bn_train for cell in norms]

    def use(weight: float) -> Any:
        for cell in norms:
            cell.bn_train = ops.BatchNorm(is_training=True, epsilon=cell.eps, momentum=weight,
                                          data_format=cell.format)
        forward = _Forward(net)  # a cell of its own: compiled afresh with these primitives
        forward.set_train(True)
        return forward

    was_training = net.training
    used = 0
    try:
        forward = use(1.0)
        for images, _ in dataset.create_tuple_iterator(num_epochs=1):
            if used >= batches:
                break
            if used == 1:
                forward = use(momentum)
            if device_lock is None:
                forward(images)
            else:
                with hold_device(device_lock, exclusive=False):
                    forward(images)
            used += 1
    finally:
        for cell, primitive in zip(norms, saved):
            cell.bn_train = primitive
        net.set_train(was_training)
    return used


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    lr: float
    seconds: float
    images: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


class Trainer:
    """Runs a recipe on one network. Works standalone or data-parallel (under ``msrun``)."""

    def __init__(self, net: Any, config: TrainConfig, steps_per_epoch: int, *, global_batch: int | None = None,
                 epochs: int | None = None, device_lock: str | None = None,
                 lock_timeout: float | None = None) -> None:
        """``device_lock`` names a device to hold shared around every step (see :mod:`nas.runtime.devicelock`)."""
        self.net = net
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.epochs = config.epochs if epochs is None else epochs
        self.rates = learning_rates(config, steps_per_epoch, global_batch or config.batch_size, self.epochs)
        self.optimizer = build_optimizer(net, config, self.rates)
        loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.step_cell = ms.amp.build_train_network(net, self.optimizer, loss, level=config.amp_level)
        self.step_cell.set_train(True)
        self.ema = WeightEMA(net, config.ema_decay) if config.ema_decay > 0 else None
        self.global_step = 0
        self.device_lock = device_lock
        self.lock_timeout = lock_timeout
        self._compiled = False
        self.compile_seconds = 0.0  # the training graph's compile (GRAPH mode; 0 until the first step)

    def _step(self, images: Any, labels: Any) -> float:
        """One optimisation step; returns its loss (reading it waits for the step to finish)."""
        def run() -> float:
            output = self.step_cell(images, labels)
            return float((output[0] if isinstance(output, tuple) else output).asnumpy())

        if not self._compiled:  # compiling takes seconds and runs no kernels: do it outside the lock, timed
            started = time.perf_counter()
            _compile(self.step_cell, images, labels)
            self.compile_seconds = time.perf_counter() - started
            self._compiled = True
        if self.device_lock is None:
            return run()
        # Held per step, not per run: a waiting latency measurement slips in between two steps.
        with hold_device(self.device_lock, exclusive=False, timeout=self.lock_timeout):
            return run()

    def current_lr(self) -> float:
        """The LR of the last step taken, read from the optimizer's own step counter."""
        taken = int(np.asarray(self.optimizer.global_step.asnumpy()).reshape(-1)[0])
        return float(self.rates[min(len(self.rates) - 1, max(0, taken - 1))])

    def _check(self, loss: float, epoch: int, step: int) -> None:
        if not math.isfinite(loss) or loss > self.config.max_loss:
            raise TrainingDiverged(f"training diverged: loss {loss:.4g} at epoch {epoch + 1}, step {step + 1}")

    def run_steps(self, batches: Iterable[tuple[Any, Any]], max_steps: int, epoch: int = 0) -> tuple[float, int, int]:
        """Train on up to ``max_steps`` batches; return (mean loss, steps, images)."""
        self.net.set_train(True)
        total = 0.0
        steps = images_seen = 0
        for images, labels in batches:
            if steps >= max_steps:
                break
            loss = self._step(images, labels)
            self._check(loss, epoch, steps)
            if self.ema is not None:
                self.ema.update()
            total += loss
            steps += 1
            images_seen += int(images.shape[0])
            self.global_step += 1
        return (total / steps if steps else float("nan")), steps, images_seen

    def fit(self, batches_for_epoch: Callable[[int], Any], *, start_epoch: int = 0,
            on_epoch_end: Callable[[EpochLog], None] | None = None) -> list[EpochLog]:
        """Train from ``start_epoch`` to the last epoch; ``batches_for_epoch(e)`` gives epoch e's pipeline."""
        logs = []
        self.global_step = start_epoch * self.steps_per_epoch
        for epoch in range(start_epoch, self.epochs):
            started = time.perf_counter()
            batches = batches_for_epoch(epoch).create_tuple_iterator(num_epochs=1)
            mean_loss, steps, images = self.run_steps(batches, self.steps_per_epoch, epoch)
            log = EpochLog(epoch=epoch + 1, loss=mean_loss, lr=self.current_lr(),
                           seconds=time.perf_counter() - started, images=images)
            logs.append(log)
            if on_epoch_end is not None:
                on_epoch_end(log)
        return logs
