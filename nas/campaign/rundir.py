"""A campaign's run directory ``<runs_dir>/<name>/``.

- ``config.yaml``: the resolved config. A campaign resumed under the same name must search the
  same way (:meth:`RunDir.check_identity`); operational settings (timeouts, threads, caching,
  the budget, workers) may change.
- ``study.db``: the default storage (SQLite).
- ``controller.pkl``: the controller's state after every tell.
- ``drivers.txt``: every driver that ran from this directory (their trials are never alive).
- ``.driver.lock``: held by the running driver: one driver per run directory. Several drivers
  share a study from run directories of their own.
- ``trials.csv``, ``trials.parquet``: the results table.
"""
from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO, Any

import yaml

from nas.campaign.config import CampaignConfig, identity_of
from nas.campaign.study import CampaignError

CONFIG_FILE = "config.yaml"
STATE_FILE = "controller.pkl"
DRIVERS_FILE = "drivers.txt"
LOCK_FILE = ".driver.lock"


def _differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in list(new) + [k for k in old if k not in new]:
            found += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return found
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return [] if list(old) == list(new) else [(path, old, new)]
    return [] if old == new else [(path, old, new)]


class RunDir:
    """The run directory of ``config`` under ``runs_dir`` (nothing is written until asked)."""

    def __init__(self, config: CampaignConfig, runs_dir: str | Path = "runs") -> None:
        self.config = config
        self.path = config.run_dir(runs_dir)
        self._lock: IO[str] | None = None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    def check_identity(self) -> None:
        """Refuse a config that searches differently from the one stored here; writes nothing."""
        if not self.config_path.is_file():
            return
        stored = yaml.safe_load(self.config_path.read_text()) or {}
        for path, old, new in _differences(identity_of(stored), self.config.search_identity()):
            raise CampaignError(f"campaign {self.config.name!r} in {str(self.path)!r} was started with "
                                f"{path}={old!r}, this config has {path}={new!r}; resume with the same settings "
                                "or choose a new name")

    def hold(self) -> None:
        """Create the directory and lock it for this driver (a second driver gets a named error)."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise CampaignError(f"campaign {self.config.name!r} is already running from {str(self.path)!r}; to "
                                "share its study, start the other driver with its own --runs-dir") from None
        self._lock = handle

    def lineage(self) -> set[str]:
        """The drivers that ran from this directory before."""
        path = self.path / DRIVERS_FILE
        return set(path.read_text().split()) if path.is_file() else set()

    def add_driver(self, driver_id: str) -> None:
        with (self.path / DRIVERS_FILE).open("a") as drivers:
            drivers.write(driver_id + "\n")

    def save_config(self) -> None:
        self.config_path.write_text(self.config.to_yaml())
