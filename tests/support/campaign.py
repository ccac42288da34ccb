"""Campaign helpers for tests: a tiny config, and the trials a run stored."""
from __future__ import annotations

from pathlib import Path

import optuna
import yaml


def tiny_config(name: str, **changes) -> dict:
    """A campaign small enough for tests: MnasNet space at width 0.25, 16 px, one epoch."""
    config = {
        "name": name, "seed": 0,
        "space": {"name": "mnasnet", "options": {"width": 0.25, "resolution": 16, "num_classes": 10}},
        "controller": {"name": "rl", "options": {"batch_size": 2}},
        "reward": {"kind": "soft", "target_ms": 5.0, "w": -0.07},
        "latency": {"source": "measure", "device": "CPU", "threads": 1, "resolution": 16, "warmup": 2,
                    "min_repeats": 5, "max_repeats": 15, "tolerance": 0.2},
        "evaluator": {"dataset": "digits", "resolution": 16, "train": {"epochs": 1, "batch_size": 64, "lr": 0.02}},
        "budget": {"trials": 4},
        "baselines": "none",  # a test that wants them names its widths
        "workers": 1,
    }
    for key, value in changes.items():  # a section given here updates the tiny one key by key
        config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) \
            else value
    return config


def write_config(folder: Path, name: str, **changes) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name, **changes)))
    return path


def stored_trials(run_dir: Path, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")
    return study.get_trials(deepcopy=False)


def complete(trials: list) -> list:
    return [t for t in trials if t.state.name == "COMPLETE"]
