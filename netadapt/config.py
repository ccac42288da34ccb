"""NetAdapt settings: one frozen dataclass, readable from a strict YAML file.

A YAML file holds the same keys as :class:`NetAdaptConfig` (``experiments/netadapt/*.yaml``);
unknown keys are rejected by name. The fine-tunes are written in the one training shape,
:class:`~nas.training.config.TrainConfig`: ``short_term`` (every proposal, ``short_term_steps``
steps at a constant LR) and ``long_term`` (the final network, ``null`` for none); keys left out
keep NetAdapt's defaults. The resolved config is saved as ``<run>/config.yaml``; a resume must
agree with it on everything except :data:`RESUMABLE`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from latency.stamp import RUNTIMES
from nas.spec.checks import check_choice, check_int, check_number, check_text
from nas.spec.config import build_dataclass, read_yaml
from nas.spec.errors import ConfigError, FieldError
from nas.spec.yamlio import read_yaml_file
from nas.training.config import EXECUTION_MODES, TrainConfig
from netadapt.algorithm import SELECTIONS, Schedule
from netadapt.grid import DEFAULT_GRID_STEP
from netadapt.proposals import TargetOptions

TARGETS = ("expand", "group", "stem", "head")
RESUMABLE = ("max_iters", "long_term", "workers", "latency_repeats", "finetune_mode")
FINETUNE_MODES = ("auto", *EXECUTION_MODES)
# ``finetune_mode: auto`` fine-tunes and scores proposals op by op (PYNATIVE) up to this many
# short-term steps, and compiles GRAPH-mode graphs per proposal above it. Measured side by side by
# ``python -m bench.proposal --resolution 224 --steps 5`` on MobileNetV3-Small 1.0 (2 CPU threads):
# a proposal took 49 s in PYNATIVE against 63 s in GRAPH (0.78x). GRAPH saved about 1.5 s per step
# but paid about 5 s compiling the training graph and 11 s more in the held-out evaluation (its own
# compile), so it wins only above about 14 steps at 224 px; at 32 px a PYNATIVE step costs
# relatively more and the crossover is near 5 steps. 5 is the smaller of the two.
PYNATIVE_MAX_STEPS = 5
SHORT_TERM = TrainConfig(epochs=1, batch_size=32, lr=0.01, weight_decay=4e-5, schedule="constant")
LONG_TERM = TrainConfig(epochs=3, batch_size=32, lr=0.01, weight_decay=4e-5, schedule="cosine")


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
    finetune_mode: str = "auto"  # graph, pynative, or auto: by the number of short-term steps
    short_term: TrainConfig = SHORT_TERM
    long_term: TrainConfig | None = LONG_TERM
    resolution: int | None = None
    latency_resolution: int | None = None
    latency_batch: int = 1
    latency_threads: int | None = 1  # None: every core (see latency.config.LatencyConfig)
    latency_repeats: int = 3
    latency_address: str | None = None  # a Ray cluster whose device host measures (see latency.remote)
    latency_runtime: str | None = None  # None: the device's default (onnxruntime on a CPU; see latency.config)
    device: str = "CPU"
    workers: int = 2
    seed: int = 0
    held_out: float = 0.2
    lut_grid_step: int = DEFAULT_GRID_STEP
    lut_calibration: int = 4
    eval_batch: int = field(default=512, repr=False)  # one batch holds the whole digits held-out split

    def __post_init__(self) -> None:
        if (self.budget_ms is None) == (self.budget_ratio is None):
            raise ValueError("netadapt: give exactly one of budget_ms and budget_ratio "
                             f"(got budget_ms={self.budget_ms!r}, budget_ratio={self.budget_ratio!r})")
        if self.budget_ms is not None:
            check_number("netadapt.budget_ms", self.budget_ms, 0.0, 1e7, low_open=True)
        if self.budget_ratio is not None:
            check_number("netadapt.budget_ratio", self.budget_ratio, 0.0, 1.0, low_open=True)
        check_int("netadapt.max_iters", self.max_iters, 0, 10000)
        self.schedule_rule()  # validates the schedule fields
        check_choice("netadapt.selection", self.selection, SELECTIONS)
        check_int("netadapt.step_multiple", self.step_multiple, 1)
        if self.min_width is not None:
            check_int("netadapt.min_width", self.min_width, 1)
        if not isinstance(self.targets, tuple) or not self.targets or any(t not in TARGETS for t in self.targets):
            raise FieldError("netadapt.targets", self.targets, f"must be a non-empty subset of {list(TARGETS)}")
        if not ({"expand", "group", "head"} & set(self.targets)):
            raise FieldError("netadapt.targets", list(self.targets), "'stem' alone shrinks nothing; add 'group'")
        check_int("netadapt.short_term_steps", self.short_term_steps, 0)
        check_choice("netadapt.finetune_mode", self.finetune_mode, FINETUNE_MODES)
        for name in ("short_term", "long_term"):
            value = getattr(self, name)
            if value is None and name == "long_term":
                continue
            if not isinstance(value, TrainConfig):
                raise FieldError(f"netadapt.{name}", value, "must be a mapping of training settings")
            if value.seed != 0:
                raise FieldError(f"netadapt.{name}.seed", value.seed, "set netadapt.seed instead")
        for name in ("resolution", "latency_resolution"):
            value = getattr(self, name)
            if value is not None:
                check_int(f"netadapt.{name}", value, 8)
        check_int("netadapt.latency_batch", self.latency_batch, 1)
        if self.latency_threads is not None:
            check_int("netadapt.latency_threads", self.latency_threads, 1)
        check_int("netadapt.latency_repeats", self.latency_repeats, 1, 25)
        if self.latency_address is not None:
            check_text("netadapt.latency_address", self.latency_address)
        if self.latency_runtime is not None:
            check_choice("netadapt.latency_runtime", self.latency_runtime, RUNTIMES)
        check_text("netadapt.device", self.device)
        check_int("netadapt.workers", self.workers, 1)
        check_int("netadapt.seed", self.seed, 0)
        check_number("netadapt.held_out", self.held_out, 0.0, 0.9, low_open=True)
        check_int("netadapt.lut_grid_step", self.lut_grid_step, 1)
        check_int("netadapt.lut_calibration", self.lut_calibration, 0)
        check_int("netadapt.eval_batch", self.eval_batch, 1)

    def proposal_mode(self) -> str:
        """The execution mode of the proposals' short-term fine-tunes: ``finetune_mode``, or under
        ``auto`` PYNATIVE for at most :data:`PYNATIVE_MAX_STEPS` steps (a GRAPH-mode compile costs
        more than it saves on so few) and GRAPH above."""
        if self.finetune_mode != "auto":
            return self.finetune_mode
        return "pynative" if self.short_term_steps <= PYNATIVE_MAX_STEPS else "graph"

    def schedule_rule(self) -> Schedule:
        return Schedule(self.schedule, self.initial_ratio, self.decay, self.fixed_ratio)

    def target_options(self) -> TargetOptions:
        chosen = set(self.targets)
        return TargetOptions(expand="expand" in chosen, groups="group" in chosen, stem="stem" in chosen,
                             head="head" in chosen)

    @property
    def long_term_epochs(self) -> int:
        """Epochs of the final fine-tune (0 without one)."""
        return 0 if self.long_term is None else self.long_term.epochs

    def replace(self, **changes: Any) -> "NetAdaptConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "netadapt") -> "NetAdaptConfig":
        """Build strictly from plain data; ``short_term``/``long_term`` mappings update the defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a mapping of settings (got {data!r})")
        fields = dict(data)
        if isinstance(fields.get("targets"), list):
            fields["targets"] = tuple(fields["targets"])
        for name, default in (("short_term", SHORT_TERM), ("long_term", LONG_TERM)):
            if name in fields and (fields[name] is not None or name == "short_term"):
                fields[name] = default.updated(fields[name], f"{where}.{name}")
        return build_dataclass(cls, fields, where)

    def differences(self, other: "NetAdaptConfig") -> list[str]:
        """Names of the fields that differ and may not change on a resume."""
        return [f.name for f in dataclasses.fields(self)
                if f.name not in RESUMABLE and getattr(self, f.name) != getattr(other, f.name)]


def load_config(path: str | Path, **overrides: Any) -> NetAdaptConfig:
    """A config from a YAML file, with ``overrides`` (None values ignored) applied on top."""
    data = read_yaml(path)
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return NetAdaptConfig.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def read_saved_config(path: str | Path) -> dict[str, Any]:
    """A run's saved ``config.yaml``: a mapping with a ``netadapt`` and an ``inputs`` mapping, or a
    :class:`ConfigError` naming the file."""
    data = read_yaml_file(path, "config file")
    for section in ("netadapt", "inputs"):
        if not isinstance(data, Mapping) or not isinstance(data.get(section), Mapping):
            raise ConfigError(f"{path}: not a NetAdapt run's saved config (no {section!r} mapping); "
                              "was it edited or replaced?")
    return dict(data)
