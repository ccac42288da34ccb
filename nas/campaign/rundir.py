"""A campaign's run directory ``<runs_dir>/<name>/``.

- ``config.yaml``: the resolved config. A campaign resumed under the same name must search the
  same way (:meth:`RunDir.check_identity`); operational settings (timeouts, threads, caching,
  the budget, workers) may change.
- ``study.db``: the default storage (SQLite).
- ``controller.json``: the controller's state after every tell (``controllers.statefile``: JSON,
  never a pickle), whose SHA-256 the study records; a file the study does not know is refused.
  ``controller.json.arrays/``: its large arrays, raw bytes named by their SHA-256.
  An older version's ``controller.pkl`` is never read.
- ``drivers.txt``: every driver that ran from this directory (their trials are never alive).
- ``.driver.lock``: held by the running driver: one driver per run directory. Several drivers
  share a study from run directories of their own.
- ``trials.csv``, ``trials.parquet``: the results table.
"""
from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO, Any

from nas.campaign.config import CampaignConfig, identity_of
from nas.campaign.study import CampaignError
from nas.spec.yamlio import read_yaml_file

CONFIG_FILE = "config.yaml"
STATE_FILE = "controller.json"
LEGACY_STATE_FILE = "controller.pkl"  # what earlier versions wrote: a pickle, so never loaded
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

    @property
    def legacy_state_path(self) -> Path:
        return self.path / LEGACY_STATE_FILE

    def check_identity(self) -> None:
        """Refuse a config that searches differently from the one stored here; writes nothing."""
        if not self.config_path.is_file():
            return
        stored = read_yaml_file(self.config_path, "config file") or {}
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

    def release(self) -> None:
        """Give up the lock taken by :meth:`hold` (nothing if it was not held)."""
        if self._lock is not None:
            self._lock.close()  # closing the file drops its flock
            self._lock = None

    def lineage(self) -> set[str]:
        """The drivers that ran from this directory before."""
        path = self.path / DRIVERS_FILE
        return set(path.read_text().split()) if path.is_file() else set()

    def run_key(self, driver_id: str) -> str:
        """What names this run directory in a shared study: its first driver (``driver_id`` if
        none ran here before). Copying or moving the directory keeps it."""
        path = self.path / DRIVERS_FILE
        first = path.read_text().split()[:1] if path.is_file() else []
        return first[0] if first else driver_id

    def check_no_legacy_state(self) -> None:
        """Refuse a run directory whose controller state is an earlier version's pickle, without
        reading it (unpickling a file can run any code); writes nothing."""
        if self.legacy_state_path.is_file() and not self.state_path.is_file():
            raise CampaignError(
                f"{str(self.legacy_state_path)!r} is a controller state pickled by an earlier version; it is never "
                "loaded, since unpickling a file can run code. Delete it to resume: the controller then restarts, "
                "and every finished trial in the study is kept")

    def add_driver(self, driver_id: str) -> None:
        with (self.path / DRIVERS_FILE).open("a") as drivers:
            drivers.write(driver_id + "\n")

    def save_config(self) -> None:
        self.config_path.write_text(self.config.to_yaml())
