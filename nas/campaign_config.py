"""Campaign configs: strict YAML (unknown keys are errors), resolved and saved with the run.

Sections (every key optional except ``name``)::

    name: demo                    # the run directory is <runs_dir>/<name>
    seed: 0
    space:      {name: mnasnet, options: {...}}          # search_spaces.get_space(name, **options)
    controller: {name: rl, options: {...}}               # controllers.make_controller(name, ...)
    reward:     {kind: soft, target_ms: 75, w: -0.07, alpha: null, beta: null}
    latency:    {source: measure, device: CPU, batch: 1, resolution: null, threads: 1, lut: null, ...}
    evaluator:  {dataset: digits, resolution: 32, epochs: 5, batch_size: 64, lr: 0.1, held_out: 0.2, ...}
    budget:     {trials: 16, wall_time_s: null, max_failed: null}
    workers: 2
    storage: null                 # SQLAlchemy URL; default sqlite:///<run dir>/study.db
    address: null                 # Ray: null starts a local cluster; "auto" or host:port joins one
    retries: 1                    # re-runs of a trial whose worker died
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from nas.config import ConfigError, build_dataclass, check_keys, read_yaml

LATENCY_SOURCES = ("measure", "lut", "both")
OPERATIONAL_KEYS = {"latency": ("timeout_s", "cache"), "evaluator": ("timeout_s", "threads")}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _positive_int(where: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where}: must be an integer >= {low} (got {value!r})")


def _number(where: str, value: Any, low: float | None = None, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a number (got {value!r})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{where}: must be in [{low}, {high}] (got {value!r})")


@dataclass(frozen=True)
class NamedPart:
    """A registry name with its options (the space or the controller)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: must be a non-empty string (got {self.name!r})")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"options: must be a mapping (got {self.options!r})")


@dataclass(frozen=True)
class RewardConfig:
    kind: str = "soft"
    target_ms: float = 75.0
    w: float = -0.07
    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        from nas.reward import KINDS

        if self.kind not in KINDS:
            raise ValueError(f"reward.kind: must be one of {list(KINDS)} (got {self.kind!r})")
        _number("reward.target_ms", self.target_ms, low=1e-6)
        _number("reward.w", self.w, high=0.0)
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if value is not None:
                _number(f"reward.{name}", value)
        try:  # the formula's own checks (signs, which exponents a kind takes), before any trial runs
            self.score(0.5, self.target_ms * 0.5)
            self.score(0.5, self.target_ms * 2.0)
        except ValueError as error:
            raise ValueError(f"reward: {error}") from None

    def score(self, accuracy: float, latency_ms: float) -> float:
        from nas.reward import reward

        return reward(accuracy, latency_ms, self.target_ms, self.kind, w=self.w, alpha=self.alpha, beta=self.beta)


@dataclass(frozen=True)
class LatencyConfig:
    """Where candidate latency comes from: ``measure`` on the device, a ``lut`` prediction, or
    ``both`` (the reward uses the measurement; the prediction is stored beside it)."""

    source: str = "measure"
    device: str = "CPU"
    batch: int = 1
    resolution: int | None = None
    threads: int = 1
    lut: str | None = None
    cache: bool = True
    warmup: int = 5
    min_repeats: int = 10
    max_repeats: int = 60
    tolerance: float = 0.03
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.source not in LATENCY_SOURCES:
            raise ValueError(f"latency.source: must be one of {list(LATENCY_SOURCES)} (got {self.source!r})")
        if self.source in ("lut", "both") and not self.lut:
            raise ValueError(f"latency.lut: source {self.source!r} needs a look-up table directory")
        _positive_int("latency.batch", self.batch)
        _positive_int("latency.threads", self.threads)
        if self.resolution is not None:
            _positive_int("latency.resolution", self.resolution, 8)
        _positive_int("latency.min_repeats", self.min_repeats)
        _positive_int("latency.max_repeats", self.max_repeats, self.min_repeats)
        _positive_int("latency.warmup", self.warmup, 0)
        _number("latency.tolerance", self.tolerance, low=1e-6)
        _number("latency.timeout_s", self.timeout_s, low=1.0)


@dataclass(frozen=True)
class EvaluatorConfig:
    """The proxy task: train ``epochs`` on the training split, score top-1 on the held-out split."""

    dataset: str = "digits"
    resolution: int = 32
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    held_out: float = 0.2
    augment: bool = False
    threads: int = 1
    max_loss: float = 1e4
    timeout_s: float = 7200.0

    def __post_init__(self) -> None:
        _number("evaluator.timeout_s", self.timeout_s, low=1.0)
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"evaluator.dataset: must be 'digits' or a directory (got {self.dataset!r})")
        _positive_int("evaluator.resolution", self.resolution, 8)
        _positive_int("evaluator.epochs", self.epochs)
        _positive_int("evaluator.batch_size", self.batch_size)
        _positive_int("evaluator.threads", self.threads)
        _number("evaluator.lr", self.lr, low=0.0, high=100.0)
        _number("evaluator.held_out", self.held_out, low=1e-6, high=0.99)

    def train_config(self, seed: int) -> Any:
        from nas.train import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, base_batch=self.batch_size,
                           momentum=self.momentum, weight_decay=self.weight_decay,
                           label_smoothing=self.label_smoothing, max_loss=self.max_loss, seed=seed)

    def data_config(self, seed: int) -> Any:
        from nas.data import DataConfig

        return DataConfig(source=self.dataset, resolution=self.resolution, held_out=self.held_out, seed=seed,
                          augment=self.augment)


@dataclass(frozen=True)
class BudgetConfig:
    """Finished trials to reach, an optional wall-time limit, and how many failures in one run
    stop the campaign (default: as many as the trial budget)."""

    trials: int = 16
    wall_time_s: float | None = None
    max_failed: int | None = None

    def __post_init__(self) -> None:
        _positive_int("budget.trials", self.trials)
        if self.max_failed is not None:
            _positive_int("budget.max_failed", self.max_failed, 0)
        if self.wall_time_s is not None:
            _number("budget.wall_time_s", self.wall_time_s, low=1.0)


@dataclass(frozen=True)
class CampaignConfig:
    name: str
    seed: int = 0
    space: NamedPart = field(default_factory=lambda: NamedPart("mnasnet"))
    controller: NamedPart = field(default_factory=lambda: NamedPart("rl"))
    reward: RewardConfig = field(default_factory=RewardConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    workers: int = 1
    storage: str | None = None
    address: str | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"name: must be letters, digits, '_', '.' or '-' (got {self.name!r})")
        _positive_int("seed", self.seed, 0)
        _positive_int("workers", self.workers)
        _positive_int("retries", self.retries, 0)

    def run_dir(self, runs_dir: str | Path = "runs") -> Path:
        return Path(runs_dir) / self.name

    def storage_url(self, runs_dir: str | Path = "runs") -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(self.run_dir(runs_dir) / 'study.db').resolve()}"

    def measure_resolution(self) -> int:
        return self.latency.resolution or self.evaluator.resolution

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for part in ("space", "controller"):
            data[part]["options"] = dict(data[part]["options"])
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def search_identity(self) -> dict[str, Any]:
        """The settings a resumed campaign must share with the stored one: everything that changes
        what is proposed, measured or scored (not timeouts, threads, caching, budget or workers)."""
        return identity_of(self.to_dict())


def identity_of(data: dict[str, Any]) -> dict[str, Any]:
    """The search-identity part of a config dict (also of one stored by an earlier run)."""
    identity = {key: data.get(key) for key in ("seed", "space", "controller", "reward", "latency", "evaluator")}
    for section, keys in OPERATIONAL_KEYS.items():
        if isinstance(identity[section], dict):
            identity[section] = {k: v for k, v in identity[section].items() if k not in keys}
    return identity


_SECTIONS = {"reward": RewardConfig, "latency": LatencyConfig, "evaluator": EvaluatorConfig, "budget": BudgetConfig}


def _named(data: Any, where: str) -> NamedPart:
    if isinstance(data, str):
        return NamedPart(data)
    check_keys(data, ["name", "options"], where)
    try:
        return NamedPart(data.get("name"), data.get("options") or {})
    except ValueError as error:
        raise ConfigError(f"{where}.{error}") from None


def config_from_dict(data: Mapping[str, Any]) -> CampaignConfig:
    """Build a campaign config strictly; the error names the key."""
    check_keys(data, [f.name for f in dataclasses.fields(CampaignConfig)], "")
    if "name" not in data:
        raise ConfigError("name: required (the campaign's name, which names its run directory)")
    values: dict[str, Any] = dict(data)
    for key in ("space", "controller"):
        if key in values:
            values[key] = _named(values[key], key)
    for key, cls in _SECTIONS.items():
        if key in values:
            values[key] = build_dataclass(cls, values[key], key)
    try:
        return CampaignConfig(**values)
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from None


def load_config(path: str | Path) -> CampaignConfig:
    """Read a campaign YAML; errors name the file and the key."""
    path = Path(path)
    data = read_yaml(path)
    try:
        return config_from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
