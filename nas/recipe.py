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

from nas.config import ConfigError, build_dataclass, check_keys, read_yaml
from nas.train import TrainConfig

DEVICES = ("CPU", "GPU", "Ascend")
MODES = ("graph", "pynative")


@dataclass(frozen=True)
class DataOptions:
    """How a recipe prepares the images; the source comes from the command line."""

    resolution: int = 224
    augment: bool = True
    held_out: float = 0.02
    workers: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution < 8:
            raise ValueError(f"data.resolution: must be an integer >= 8 (got {self.resolution!r})")
        if not isinstance(self.augment, bool):
            raise ValueError(f"data.augment: must be true or false (got {self.augment!r})")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"data.workers: must be a positive integer (got {self.workers!r})")


@dataclass(frozen=True)
class SystemOptions:
    device: str = "CPU"
    mode: str = "graph"
    keep_checkpoints: int = 5

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"system.device: must be one of {list(DEVICES)} (got {self.device!r})")
        if self.mode not in MODES:
            raise ValueError(f"system.mode: must be one of {list(MODES)} (got {self.mode!r})")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            raise ValueError(f"system.keep_checkpoints: must be a positive integer (got {self.keep_checkpoints!r})")


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
