"""Training recipes: YAML files in ``experiments/recipes`` mapping onto :class:`TrainConfig`.

A recipe has three sections::

    train:   # TrainConfig fields (optimizer, lr for base_batch, schedule, EMA, AMP, ...)
    data:    # resolution, augment, held_out, workers
    system:  # device (CPU/GPU/Ascend), mode (graph/pynative), keep_checkpoints
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.spec.checks import check_bool, check_choice, check_int, check_number
from nas.spec.config import build_dataclass, check_keys, read_yaml
from nas.spec.errors import ConfigError
from nas.training.config import EXECUTION_MODES, TrainConfig

DEVICES = ("CPU", "GPU", "Ascend")


@dataclass(frozen=True)
class DataOptions:
    """How a recipe prepares the images; the source comes from the command line."""

    resolution: int = 224
    augment: bool = True
    held_out: float = 0.02
    workers: int = 4

    def __post_init__(self) -> None:
        check_int("data.resolution", self.resolution, 8)
        check_bool("data.augment", self.augment)
        check_number("data.held_out", self.held_out, 0.0, 0.99, low_open=True)
        check_int("data.workers", self.workers, 1)


@dataclass(frozen=True)
class SystemOptions:
    device: str = "CPU"
    mode: str = "graph"
    keep_checkpoints: int = 5

    def __post_init__(self) -> None:
        check_choice("system.device", self.device, DEVICES)
        check_choice("system.mode", self.mode, EXECUTION_MODES)
        check_int("system.keep_checkpoints", self.keep_checkpoints, 1)


@dataclass(frozen=True)
class Recipe:
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataOptions = field(default_factory=DataOptions)
    system: SystemOptions = field(default_factory=SystemOptions)
    name: str = "recipe"


def recipe_from_dict(data: dict[str, Any], name: str = "recipe") -> Recipe:
    check_keys(data, ["train", "data", "system"], "")
    return Recipe(train=build_dataclass(TrainConfig, data.get("train"), "train"),
                  data=build_dataclass(DataOptions, data.get("data"), "data"),
                  system=build_dataclass(SystemOptions, data.get("system"), "system"), name=name)


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file strictly; errors name the file and the key."""
    path = Path(path)
    data = read_yaml(path)
    try:
        return recipe_from_dict(data, name=path.stem)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
