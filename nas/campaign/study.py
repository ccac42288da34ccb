"""The campaign's Optuna study. Every detail of Optuna that is not public API and that a campaign
relies on lives in this file: driver heartbeats in the study's system attributes, and failing the
trials that a dead driver left RUNNING.

A driver writes ``heartbeat:<driver id>`` into the study every :data:`HEARTBEAT_EVERY_S`; a
driver whose heartbeat is older than :data:`HEARTBEAT_STALE_S` is taken for dead, and its
RUNNING trials become FAIL ("interrupted") so the restored controller can propose again.

A storage that goes away mid-campaign (a database server restarted) surfaces as one of
:data:`STORAGE_ERRORS`; the driver then stops its loop with :class:`StorageLostError`, and
:func:`wait_for_storage` waits, bounded, until the storage answers again so that the campaign can
be resumed like any interrupted one. An SQLite file is checked with ``PRAGMA quick_check`` before
use: a corrupt or truncated ``study.db`` is a named error and is never written to.
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import optuna
import sqlalchemy.exc

from controllers.optuna_rdb import write_study_system_attr
from nas.campaign.config import CampaignConfig, default_storage, load_config
from nas.spec.errors import NasError
from nas.spec.optional import optional_import

INTERRUPTED = "interrupted: the campaign stopped while this trial was running"
HEARTBEAT_EVERY_S = 15.0
HEARTBEAT_STALE_S = 120.0
COMPLETE = optuna.trial.TrialState.COMPLETE
FAIL = optuna.trial.TrialState.FAIL
RUNNING = optuna.trial.TrialState.RUNNING
# What a lost connection to the storage raises: Optuna wraps errors inside its sessions, SQLAlchemy
# raises directly when a connection cannot be made.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (optuna.exceptions.StorageInternalError,
                                                   sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
STORAGE_POLL_S = 2.0
SQLITE_BUSY_WAIT_S = 60.0  # the integrity check waits this long for another process's write lock


class CampaignError(NasError):
    """The campaign cannot start or continue (bad storage, a changed config, ...)."""


class RunNotFoundError(NasError):
    """The run directory or its study does not exist."""


class StorageLostError(CampaignError):
    """The storage stopped answering during a campaign; finished trials are in it, unharmed."""


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///<path>`` URL (None for other storages and in-memory SQLite)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_sqlite_file(path: Path, busy_wait_s: float = SQLITE_BUSY_WAIT_S) -> None:
    """A corrupt or truncated SQLite file is a named error; the file is opened read-only, so it is
    left exactly as it was. A missing or empty file is fine (Optuna creates its tables). A file
    whose write lock another process holds (a driver in the middle of a commit) is waited for, up to
    ``busy_wait_s``; still locked after that, it is a named error of its own, not a corrupt file."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=busy_wait_s)) as db:
            found = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            raise CampaignError(f"{str(path)!r} stayed locked by another process for {busy_wait_s:g} s (a driver "
                                "writing to it?); it was left as it is: try again when that process is done") from None
        found = (str(error),)
    except sqlite3.Error as error:
        found = (str(error),)
    if found != ("ok",):
        raise CampaignError(f"{str(path)!r} is not a readable SQLite study ({found[0] if found else 'no answer'}); it "
                            "was left as it is: restore it from a copy, or start a campaign under another name")


def check_storage(url: str, attempts: int = 5) -> None:
    """Connect to the storage once; an unreachable database is a one-line error.

    A new SQLite file can be met while another process (a second driver, ``nas status``) is
    creating Optuna's tables in it; that race is retried ``attempts`` times, half a second apart.
    """
    if url.startswith("postgresql"):
        optional_import("psycopg2")  # missing: one line with the install hint, not SQLAlchemy's traceback
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(path)
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


def wait_for_storage(url: str, patience_s: float, log: Callable[[str], None]) -> None:
    """Poll the storage every :data:`STORAGE_POLL_S` until it answers, for at most ``patience_s``;
    still unreachable then: :class:`StorageLostError` saying how to resume."""
    deadline = time.monotonic() + patience_s
    for attempt in range(int(patience_s / STORAGE_POLL_S) + 2):
        try:
            check_storage(url, attempts=1)
            if attempt:
                log(f"storage {url} answers again")
            return
        except CampaignError as error:
            if time.monotonic() >= deadline:
                raise StorageLostError(f"{error}; gave up after {patience_s:.0f} s. Finished trials are kept in it: "
                                       "re-run the same command to resume once it is back") from None
        time.sleep(STORAGE_POLL_S)
    raise StorageLostError(f"storage {url} did not answer within {patience_s:.0f} s; re-run the same command to "
                           "resume once it is back")


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
        self._last_digest: dict[str, list[str]] = {}  # run key -> the digest this driver recorded last

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
        """Record ``digest`` as run ``run_key``'s latest state, keeping the one before it. Only the
        driver of that run directory writes its digests, so after the first they come from memory."""
        previous = self._last_digest[run_key] if run_key in self._last_digest else self.state_digests(run_key)[-1:]
        kept = [*previous, digest]
        write_study_system_attr(self.study, f"controller_state:{run_key}", kept)
        self._last_digest[run_key] = [digest]

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
