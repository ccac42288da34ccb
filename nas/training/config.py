"""What training is told: the hyperparameters (:class:`TrainConfig`) and the data
(:class:`DataConfig`). Pure Python, so configs can be read without importing MindSpore."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from nas.spec.checks import check_choice, check_int, check_number, check_text
from nas.spec.config import build_dataclass, check_keys
from nas.spec.errors import ConfigError, FieldError, NasError

OPTIMIZERS = ("momentum", "rmsprop", "sgd")
SCHEDULES = ("cosine", "exponential", "constant")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
# How MindSpore runs a network: GRAPH compiles it whole (per input shape), PYNATIVE runs it op by op.
EXECUTION_MODES = ("graph", "pynative")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters: the one shape for recipes (``train:``), the campaign's proxy
    task (``evaluator.train``) and NetAdapt's fine-tunes (``short_term``, ``long_term``).

    ``lr`` is the peak rate for a global batch of ``base_batch`` (default: ``batch_size``, i.e.
    the rate for this batch) and scales linearly with the global batch.
    """

    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "momentum"
    lr: float = 0.1
    base_batch: int | None = None
    momentum: float = 0.9
    rmsprop_decay: float = 0.9
    rmsprop_epsilon: float = 1e-3
    weight_decay: float = 4e-5
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    min_lr: float = 0.0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    amp_level: str = "O0"
    max_loss: float = 1e4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(f"train.{name}", getattr(self, name), 1)
        if self.base_batch is not None:
            check_int("train.base_batch", self.base_batch, 1)
        check_int("train.seed", self.seed, 0)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.amp_level", self.amp_level, AMP_LEVELS)
        for name, low, high in (("lr", 0.0, 100.0), ("momentum", 0.0, 1.0), ("weight_decay", 0.0, 1.0),
                                ("warmup_epochs", 0.0, 1e4), ("label_smoothing", 0.0, 0.99),
                                ("ema_decay", 0.0, 0.99999), ("decay_rate", 0.0, 1.0), ("min_lr", 0.0, 100.0),
                                ("rmsprop_decay", 0.0, 1.0), ("rmsprop_epsilon", 0.0, 1.0)):
            check_number(f"train.{name}", getattr(self, name), low, high)
        check_number("train.decay_epochs", self.decay_epochs, 0.0, low_open=True)
        check_number("train.max_loss", self.max_loss, 0.0, low_open=True)

    @property
    def lr_batch(self) -> int:
        """The global batch that ``lr`` is given for."""
        return self.batch_size if self.base_batch is None else self.base_batch

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def updated(self, data: Any, where: str) -> "TrainConfig":
        """This config with the keys of the mapping ``data`` changed, strictly: an unknown key or a
        bad value is a :class:`~nas.spec.errors.ConfigError` naming ``where.key``. A
        ``TrainConfig`` is returned as it is."""
        if isinstance(data, TrainConfig):
            return data
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a mapping of training settings (got {data!r})")
        check_keys(data or {}, [f.name for f in dataclasses.fields(self)], where)
        return build_dataclass(TrainConfig, {**dataclasses.asdict(self), **(data or {})}, where)


class DatasetError(NasError):
    """A dataset is missing, empty or in a layout we do not recognise."""


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split and prepared."""

    source: str = "digits"
    resolution: int = 32
    held_out: float = 0.2
    seed: int = 0
    augment: bool = False
    workers: int = 1
    subset: int = 0  # training images kept (0: all); the proxy task's subset


    def __post_init__(self) -> None:
        try:
            check_text("data.source", self.source)
            check_int("data.resolution", self.resolution, 8, 1024)
            check_number("data.held_out", self.held_out, 0.0, 1.0, low_open=True)
            if self.held_out == 1.0:
                raise FieldError("data.held_out", self.held_out, "must be a fraction in (0, 1)")
            check_int("data.seed", self.seed, 0)
            check_int("data.workers", self.workers, 1)
            check_int("data.subset", self.subset, 0)
        except FieldError as error:
            raise DatasetError(str(error)) from None
