"""The campaign's Optuna study. Every detail of Optuna that is not public API and that a campaign
relies on lives in this file: driver heartbeats in the study's system attributes, and failing the
trials that a dead driver left RUNNING.

A driver writes ``heartbeat:<driver id>`` into the study every :data:`HEARTBEAT_EVERY_S`; a
driver whose heartbeat is older than :data:`HEARTBEAT_STALE_S` is taken for dead, and its
RUNNING trials become FAIL ("interrupted") so the restored controller can propose again.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import optuna

from nas.campaign.config import CampaignConfig, default_storage, load_config
from nas.spec.errors import NasError
from nas.spec.optional import optional_import

INTERRUPTED = "interrupted: the campaign stopped while this trial was running"
HEARTBEAT_EVERY_S = 15.0
HEARTBEAT_STALE_S = 120.0
COMPLETE = optuna.trial.TrialState.COMPLETE
FAIL = optuna.trial.TrialState.FAIL
RUNNING = optuna.trial.TrialState.RUNNING


class CampaignError(NasError):
    """The campaign cannot start or continue (bad storage, a changed config, ...)."""


class RunNotFoundError(NasError):
    """The run directory or its study does not exist."""


def check_storage(url: str, attempts: int = 5) -> None:
    """Connect to the storage once; an unreachable database is a one-line error.

    A new SQLite file can be met while another process (a second driver, ``nas status``) is
    creating Optuna's tables in it; that race is retried ``attempts`` times, half a second apart.
    """
    if url.startswith("postgresql"):
        optional_import("psycopg2")  # missing: one line with the install hint, not SQLAlchemy's traceback
    for attempt in range(attempts):
        storage = None
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}
                                                 if not url.startswith("sqlite") else None)
            storage.get_all_studies()
            return
        except Exception as error:  # SQLAlchemy raises many kinds
            if url.startswith("sqlite") and attempt + 1 < attempts:
                time.sleep(0.5)
                continue
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CampaignError(f"storage {url!r} is unreachable: {message}") from None
        finally:
            if storage is not None:
                storage.engine.dispose()


def open_study(run_dir: str | Path) -> tuple[Any, CampaignConfig]:
    """The Optuna study of a run directory, to read (its saved config names the storage)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise RunNotFoundError(f"{str(run_dir)!r} is not a campaign run directory (no config.yaml)")
    config = load_config(config_path)
    url = config.storage or default_storage(run_dir)
    if url.startswith("sqlite") and not (run_dir / "study.db").is_file():
        raise RunNotFoundError(f"{str(run_dir)!r} has no study.db yet")
    check_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=config.name, storage=url), config
    except KeyError:
        raise RunNotFoundError(f"no study {config.name!r} in {url}") from None


class CampaignStudy:
    """The study of a running campaign, as one driver ``driver_id`` sees it."""

    def __init__(self, study: Any, driver_id: str) -> None:
        self.study = study
        self.driver_id = driver_id
        self._last_heartbeat = 0.0

    # ----- reading ---------------------------------------------------------------------------

    def trials(self, *states: Any) -> list[Any]:
        """The study's trials (those in ``states``, if given), without copying them."""
        return self.study.get_trials(deepcopy=False, states=states or None)

    def finished(self) -> list[Any]:
        return self.trials(COMPLETE)

    def failed(self) -> list[Any]:
        return self.trials(FAIL)

    def evaluated(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """arch_id -> (number, attributes) of the first finished trial that evaluated it."""
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        for trial in self.finished():
            arch = trial.user_attrs.get("arch_id")
            if arch and "reused_from" not in trial.user_attrs and arch not in found:
                found[arch] = (trial.number, dict(trial.user_attrs))
        return found

    # ----- controller states ------------------------------------------------------------------

    def state_digests(self, run_key: str) -> list[str]:
        """SHA-256 digests of the controller state files this study knows for run ``run_key``
        (the last saved, and the one before it: a driver may die between recording and writing)."""
        attrs = self.study._storage.get_study_system_attrs(self.study._study_id)
        found = attrs.get(f"controller_state:{run_key}", [])
        return [str(digest) for digest in found] if isinstance(found, list) else []

    def record_state_digest(self, run_key: str, digest: str) -> None:
        kept = [*self.state_digests(run_key)[-1:], digest]
        self.study._storage.set_study_system_attr(self.study._study_id, f"controller_state:{run_key}", kept)

    # ----- drivers -----------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Tell drivers sharing the study that this one is alive (at most every few seconds)."""
        now = time.time()
        if now - self._last_heartbeat >= HEARTBEAT_EVERY_S:
            self.study._storage.set_study_system_attr(self.study._study_id, f"heartbeat:{self.driver_id}", now)
            self._last_heartbeat = now

    def fail_stale(self, lineage: Iterable[str], keep: Iterable[int] = ()) -> None:
        """Trials left RUNNING by a dead driver become FAIL ("interrupted"). A driver is dead if it
        ran from this run directory before (``lineage``), or if its heartbeat in the study is
        stale; the trials in ``keep`` and those of live drivers sharing the study are left alone."""
        lineage, keep = set(lineage), set(keep)
        storage = self.study._storage
        beats = storage.get_study_system_attrs(self.study._study_id)
        now = time.time()
        for trial in self.trials(RUNNING):
            driver = trial.user_attrs.get("driver")
            alive = now - beats.get(f"heartbeat:{driver}", 0.0) < HEARTBEAT_STALE_S
            if trial.number in keep or (driver not in lineage and driver is not None and alive):
                continue
            storage.set_trial_user_attr(trial._trial_id, "error", INTERRUPTED)
            storage.set_trial_state_values(trial._trial_id, FAIL)
