"""Campaign configs: strict YAML (unknown keys are errors), resolved and saved with the run.

Sections (every key optional except ``name``)::

    name: demo                    # the run directory is <runs_dir>/<name>
    seed: 0
    space:      {name: mnasnet, options: {...}}          # search_spaces.get_space(name, **options)
    controller: {name: rl, options: {...}}               # controllers.make_controller(name, ...)
    reward:     {kind: soft, target_ms: 75, w: -0.07, alpha: null, beta: null}
    latency:    {source: measure, device: CPU, batch: 1, resolution: null, threads: 1, lut: null, ...}
    evaluator:  {dataset: digits, resolution: 32, held_out: 0.2, train: {epochs: 5, batch_size: 64, lr: 0.1}}
    budget:     {trials: 16, wall_time_s: null, max_failed: null}
    workers: 2
    storage: null                 # SQLAlchemy URL; default sqlite:///<run dir>/study.db
    address: null                 # Ray: null starts a local cluster; "auto" or host:port joins one
                                  # (latency.address: the same address measures on its device host)
    retries: 1                    # re-runs of a trial whose worker died

``latency`` is a :class:`latency.config.LatencyConfig`; a campaign measures more lightly than
its defaults (one thread, 5 warm-up runs, at most 60 timed runs, a 3% tolerance) unless the
section says otherwise. ``evaluator.train`` is a :class:`nas.training.config.TrainConfig` (the
same shape as a recipe's ``train:``); its seed is the campaign's.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from latency.config import LatencyConfig
from nas.campaign.reward import RewardConfig
from nas.spec.checks import check_bool, check_int, check_number, check_text
from nas.spec.config import build_dataclass, check_keys, read_yaml
from nas.spec.errors import ConfigError, FieldError
from nas.training.config import DataConfig, TrainConfig

OPERATIONAL_KEYS = {"latency": ("timeout_s", "cache"), "evaluator": ("timeout_s", "threads")}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
CAMPAIGN_LATENCY = {"warmup": 5, "max_repeats": 60, "tolerance": 0.03}
PROXY_TRAIN = TrainConfig(epochs=5, batch_size=64, lr=0.1)


@dataclass(frozen=True)
class NamedPart:
    """A registry name with its options (the space or the controller)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_text("name", self.name)
        if not isinstance(self.options, Mapping):
            raise FieldError("options", self.options, "must be a mapping")


@dataclass(frozen=True)
class EvaluatorConfig:
    """The proxy task: train with ``train`` on the training split, score top-1 on the held-out split."""

    dataset: str = "digits"
    resolution: int = 32
    held_out: float = 0.2
    augment: bool = False
    subset: int = 0  # training images the proxy trains on (0: the whole training split)
    threads: int = 1
    timeout_s: float = 7200.0
    train: TrainConfig = PROXY_TRAIN

    def __post_init__(self) -> None:
        check_text("evaluator.dataset", self.dataset)
        check_int("evaluator.resolution", self.resolution, 8)
        check_number("evaluator.held_out", self.held_out, 1e-6, 0.99)
        check_bool("evaluator.augment", self.augment)
        check_int("evaluator.subset", self.subset, 0)
        check_int("evaluator.threads", self.threads, 1)
        check_number("evaluator.timeout_s", self.timeout_s, 1.0)
        if not isinstance(self.train, TrainConfig):
            raise FieldError("evaluator.train", self.train, "must be a mapping of training settings")
        if self.train.seed != 0:
            raise FieldError("evaluator.train.seed", self.train.seed, "set the campaign's seed instead")

    def train_config(self, seed: int) -> TrainConfig:
        return self.train.replace(seed=seed)

    def data_config(self, seed: int) -> DataConfig:
        return DataConfig(source=self.dataset, resolution=self.resolution, held_out=self.held_out, seed=seed,
                          augment=self.augment, subset=self.subset)


@dataclass(frozen=True)
class BudgetConfig:
    """Finished trials to reach, an optional wall-time limit, and how many failures in one run
    stop the campaign (default: as many as the trial budget)."""

    trials: int = 16
    wall_time_s: float | None = None
    max_failed: int | None = None

    def __post_init__(self) -> None:
        check_int("budget.trials", self.trials, 1)
        if self.max_failed is not None:
            check_int("budget.max_failed", self.max_failed, 0)
        if self.wall_time_s is not None:
            check_number("budget.wall_time_s", self.wall_time_s, 1.0)

    @property
    def failure_limit(self) -> int:
        return self.trials if self.max_failed is None else self.max_failed


DEFAULT_BASELINE_WIDTHS = (0.35, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class BaselinesConfig:
    """The widths at which the space's reference is evaluated first, as baselines
    (:mod:`nas.campaign.baselines`); ``baselines: none`` in YAML turns them off."""

    widths: tuple[float, ...] = DEFAULT_BASELINE_WIDTHS

    def __post_init__(self) -> None:
        if not isinstance(self.widths, (tuple, list)):
            raise FieldError("baselines.widths", self.widths, "must be a list of width multipliers")
        for index, width in enumerate(self.widths):
            check_number(f"baselines.widths[{index}]", width, 0.0, 4.0, low_open=True)
        if len(set(self.widths)) != len(self.widths):
            raise FieldError("baselines.widths", list(self.widths), "must not repeat a width")
        object.__setattr__(self, "widths", tuple(float(width) for width in self.widths))


@dataclass(frozen=True)
class CampaignConfig:
    name: str
    seed: int = 0
    space: NamedPart = field(default_factory=lambda: NamedPart("mnasnet"))
    controller: NamedPart = field(default_factory=lambda: NamedPart("rl"))
    reward: RewardConfig = field(default_factory=RewardConfig)
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(**CAMPAIGN_LATENCY))
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    workers: int = 1
    storage: str | None = None
    address: str | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise FieldError("name", self.name, "must be letters, digits, '_', '.' or '-'")
        check_int("seed", self.seed, 0)
        check_int("workers", self.workers, 1)
        check_int("retries", self.retries, 0)
        if self.latency.address is not None and self.latency.address != self.address:
            raise FieldError("latency.address", self.latency.address,
                             f"must be the campaign's own Ray cluster (address: {self.address!r}); its workers "
                             "measure through the device actor of the cluster they run on")

    def run_dir(self, runs_dir: str | Path = "runs") -> Path:
        return Path(runs_dir) / self.name

    def storage_url(self, runs_dir: str | Path = "runs") -> str:
        """The ``storage`` URL, or the default SQLite file in the run directory."""
        return self.storage or default_storage(self.run_dir(runs_dir))

    def measure_resolution(self) -> int:
        return self.latency.resolution or self.evaluator.resolution

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for part in ("space", "controller"):
            data[part]["options"] = dict(data[part]["options"])
        data["baselines"]["widths"] = list(data["baselines"]["widths"])
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def search_identity(self) -> dict[str, Any]:
        """The settings a resumed campaign must share with the stored one: everything that changes
        what is proposed, measured or scored (not timeouts, threads, caching, budget or workers)."""
        return identity_of(self.to_dict())


def default_storage(run_dir: str | Path) -> str:
    """The default storage of a run directory: ``sqlite:///<run dir>/study.db``."""
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def identity_of(data: dict[str, Any]) -> dict[str, Any]:
    """The search-identity part of a config dict (also of one stored by an earlier run)."""
    identity = {key: data.get(key) for key in ("seed", "space", "controller", "reward", "latency", "evaluator")}
    for section, keys in OPERATIONAL_KEYS.items():
        if isinstance(identity[section], dict):
            identity[section] = {k: v for k, v in identity[section].items() if k not in keys}
    return identity


def _named(data: Any, where: str) -> NamedPart:
    if isinstance(data, str):
        return NamedPart(data)
    check_keys(data, ["name", "options"], where)
    try:
        return NamedPart(data.get("name"), data.get("options") or {})
    except ValueError as error:
        raise ConfigError(f"{where}.{error}") from None


def _evaluator(data: Any) -> EvaluatorConfig:
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"evaluator: must be a mapping (got {data!r})")
    values = dict(data or {})
    values["train"] = PROXY_TRAIN.updated(values.get("train"), "evaluator.train")
    return build_dataclass(EvaluatorConfig, values, "evaluator")


def _latency(data: Any) -> LatencyConfig:
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"latency: must be a mapping (got {data!r})")
    return build_dataclass(LatencyConfig, {**CAMPAIGN_LATENCY, **(data or {})}, "latency")


def _baselines(data: Any) -> BaselinesConfig:
    if data is None or data == "none":
        return BaselinesConfig(widths=())
    if not isinstance(data, Mapping):
        raise ConfigError(f"baselines: must be 'none' or a mapping such as {{widths: [0.5, 1.0]}} (got {data!r})")
    return build_dataclass(BaselinesConfig, {**data, "widths": data.get("widths", DEFAULT_BASELINE_WIDTHS)},
                           "baselines")


def config_from_dict(data: Mapping[str, Any]) -> CampaignConfig:
    """Build a campaign config strictly; the error names the key."""
    check_keys(data, [f.name for f in dataclasses.fields(CampaignConfig)], "")
    if "name" not in data:
        raise ConfigError("name: required (the campaign's name, which names its run directory)")
    values: dict[str, Any] = dict(data)
    for key in ("space", "controller"):
        if key in values:
            values[key] = _named(values[key], key)
    if "reward" in values:
        values["reward"] = build_dataclass(RewardConfig, values["reward"], "reward")
    if "latency" in values:
        values["latency"] = _latency(values["latency"])
    if "evaluator" in values:
        values["evaluator"] = _evaluator(values["evaluator"])
    if "budget" in values:
        values["budget"] = build_dataclass(BudgetConfig, values["budget"], "budget")
    if "baselines" in values:
        values["baselines"] = _baselines(values["baselines"])
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
