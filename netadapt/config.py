"""NetAdapt settings: one frozen dataclass, readable from a strict YAML file.

A YAML file holds the same keys as :class:`NetAdaptConfig` (``experiments/netadapt/*.yaml``);
unknown keys are rejected by name. The resolved config is saved as ``<run>/config.yaml``; a
resume must agree with it on everything except :data:`RESUMABLE`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from netadapt.algorithm import SELECTIONS, Schedule
from netadapt.proposals import TargetOptions
from netadapt.worker import FineTuneSettings

TARGETS = ("expand", "group", "stem", "head")
RESUMABLE = ("max_iters", "long_term_epochs", "long_term_lr", "workers", "latency_repeats")


def _positive_int(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"netadapt.{name}: must be an integer >= {low} (got {value!r})")


def _number(name: str, value: Any, low: float, high: float, low_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value > high or value < low or (
            low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"netadapt.{name}: must be in {bracket}{low}, {high}] (got {value!r})")


@dataclass(frozen=True)
class NetAdaptConfig:
    """Everything that shapes a NetAdapt run (the inputs and the output directory aside)."""

    budget_ms: float | None = None
    budget_ratio: float | None = None
    max_iters: int = 10
    schedule: str = "decay"
    initial_ratio: float = 0.025
    decay: float = 0.96
    fixed_ratio: float = 0.01
    selection: str = "slope"
    step_multiple: int = 8
    min_width: int | None = None
    targets: tuple[str, ...] = TARGETS
    short_term_steps: int = 100
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 4e-5
    long_term_epochs: int = 3
    long_term_lr: float = 0.01
    resolution: int | None = None
    latency_resolution: int | None = None
    latency_batch: int = 1
    latency_threads: int | None = None
    latency_repeats: int = 3
    device: str = "CPU"
    workers: int = 2
    seed: int = 0
    held_out: float = 0.2
    lut_grid_step: int = 1
    lut_calibration: int = 4

    def __post_init__(self) -> None:
        if (self.budget_ms is None) == (self.budget_ratio is None):
            raise ValueError("netadapt: give exactly one of budget_ms and budget_ratio "
                             f"(got budget_ms={self.budget_ms!r}, budget_ratio={self.budget_ratio!r})")
        if self.budget_ms is not None:
            _number("budget_ms", self.budget_ms, 0.0, 1e7)
        if self.budget_ratio is not None:
            _number("budget_ratio", self.budget_ratio, 0.0, 1.0)
        _positive_int("max_iters", self.max_iters, 0)
        if self.max_iters > 10000:
            raise ValueError(f"netadapt.max_iters: must be at most 10000 (got {self.max_iters!r})")
        self.schedule_rule()  # validates the schedule fields
        if self.selection not in SELECTIONS:
            raise ValueError(f"netadapt.selection: must be one of {list(SELECTIONS)} (got {self.selection!r})")
        _positive_int("step_multiple", self.step_multiple)
        if self.min_width is not None:
            _positive_int("min_width", self.min_width)
        if not isinstance(self.targets, tuple) or not self.targets or any(t not in TARGETS for t in self.targets):
            raise ValueError(f"netadapt.targets: must be a non-empty subset of {list(TARGETS)} (got {self.targets!r})")
        if not ({"expand", "group", "head"} & set(self.targets)):
            raise ValueError(f"netadapt.targets: 'stem' alone shrinks nothing; add 'group' (got {list(self.targets)})")
        self.fine_tune()  # validates steps, batch and lr
        _positive_int("long_term_epochs", self.long_term_epochs, 0)
        _number("long_term_lr", self.long_term_lr, 0.0, 10.0)
        _number("weight_decay", self.weight_decay, 0.0, 1.0, low_open=False)
        for name in ("resolution", "latency_resolution"):
            value = getattr(self, name)
            if value is not None:
                _positive_int(name, value, 8)
        _positive_int("latency_batch", self.latency_batch)
        if self.latency_threads is not None:
            _positive_int("latency_threads", self.latency_threads)
        _positive_int("latency_repeats", self.latency_repeats)
        if self.latency_repeats > 25:
            raise ValueError(f"netadapt.latency_repeats: must be at most 25 (got {self.latency_repeats!r})")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"netadapt.device: must be CPU, GPU or Ascend (got {self.device!r})")
        _positive_int("workers", self.workers)
        _positive_int("seed", self.seed, 0)
        _number("held_out", self.held_out, 0.0, 0.9)
        _positive_int("lut_grid_step", self.lut_grid_step)
        _positive_int("lut_calibration", self.lut_calibration, 0)

    def schedule_rule(self) -> Schedule:
        return Schedule(self.schedule, self.initial_ratio, self.decay, self.fixed_ratio)

    def target_options(self) -> TargetOptions:
        chosen = set(self.targets)
        return TargetOptions(expand="expand" in chosen, groups="group" in chosen, stem="stem" in chosen,
                             head="head" in chosen)

    def fine_tune(self) -> FineTuneSettings:
        return FineTuneSettings(steps=self.short_term_steps, batch_size=self.batch_size, lr=self.lr,
                                weight_decay=self.weight_decay)

    def replace(self, **changes: Any) -> "NetAdaptConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "netadapt") -> "NetAdaptConfig":
        from nas.config import build_dataclass

        fields = dict(data)
        if isinstance(fields.get("targets"), list):
            fields["targets"] = tuple(fields["targets"])
        return build_dataclass(cls, fields, where)

    def differences(self, other: "NetAdaptConfig") -> list[str]:
        """Names of the fields that differ and may not change on a resume."""
        return [f.name for f in dataclasses.fields(self)
                if f.name not in RESUMABLE and getattr(self, f.name) != getattr(other, f.name)]


def load_config(path: str | Path, **overrides: Any) -> NetAdaptConfig:
    """A config from a YAML file, with ``overrides`` (None values ignored) applied on top."""
    from nas.config import ConfigError, read_yaml

    data = read_yaml(path)
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return NetAdaptConfig.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
