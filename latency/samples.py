"""Whole networks measured end to end: the training (and check) set of the fitted predictor.

``samples.sqlite`` in a look-up-table directory holds one row per architecture: its spec (as
JSON, read back with :meth:`ArchSpec.from_dict`, never unpickled), the role it was measured for
(``space``, ``reference``, ``netadapt``, ``adaptive``: training; ``check``: held out), and the
measurement with its 95% interval. Each row is committed as soon as it is measured, so an
interrupted ``nas latency fit`` keeps everything and a re-run measures only what is missing.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from latency.errors import LUTCorruptError, StampMismatchError
from latency.result import LatencyResult
from latency.stamp import DeviceStamp
from nas.spec.arch import ArchSpec
from nas.spec.errors import SpecError

SAMPLES = "samples.sqlite"
TRAINING_ROLES = ("space", "reference", "netadapt", "adaptive")
ROLES = (*TRAINING_ROLES, "check")


@dataclass(frozen=True)
class Sample:
    """One network measured end to end."""

    arch_id: str
    name: str
    role: str
    spec: ArchSpec
    ms: float
    ci_low: float
    ci_high: float
    precise: bool


class SampleStore:
    """The measured networks of one directory, under one stamp (another stamp is refused)."""

    def __init__(self, directory: str | Path, stamp: DeviceStamp) -> None:
        self.path = Path(directory) / SAMPLES
        self.stamp = stamp
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS samples (arch_id TEXT PRIMARY KEY, name TEXT, role TEXT, "
                             "spec TEXT, ms REAL, ci_low REAL, ci_high REAL, precise INTEGER, measured_at REAL)")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'stamp'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('stamp', ?)", (stamp.key,))
                self._db.commit()
            elif row[0] != stamp.key:
                raise StampMismatchError(f"{self.path} holds networks measured under [{row[0]}], not "
                                         f"[{stamp.key}]; use another directory")
            self._rows = {arch_id: (role, ms) for arch_id, role, ms in
                          self._db.execute("SELECT arch_id, role, ms FROM samples")}
        except sqlite3.DatabaseError as error:
            raise LUTCorruptError(f"{self.path} is not a readable sample database ({error}); move it away "
                                  f"to start a new one") from None

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, arch_id: object) -> bool:
        return arch_id in self._rows

    def role(self, arch_id: str) -> str | None:
        row = self._rows.get(arch_id)
        return row[0] if row else None

    def add(self, spec: ArchSpec, role: str, result: LatencyResult) -> None:
        if role not in ROLES:
            raise ValueError(f"role: must be one of {list(ROLES)} (got {role!r})")
        if result.stamp.key != self.stamp.key:
            raise StampMismatchError(f"a result measured under [{result.stamp.key}] cannot join {self.path} "
                                     f"([{self.stamp.key}])")
        values = (spec.arch_id, spec.name, role, json.dumps(spec.to_dict(), sort_keys=True), result.estimate_ms,
                  result.ci_low_ms, result.ci_high_ms, int(result.precise), time.time())
        self._db.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        self._db.commit()
        self._rows[spec.arch_id] = (role, result.estimate_ms)

    def samples(self, roles: Sequence[str] = TRAINING_ROLES) -> list[Sample]:
        """The stored networks of ``roles``, in the order they were measured."""
        marks = ",".join("?" * len(roles))
        found = []
        rows = self._db.execute(f"SELECT arch_id, name, role, spec, ms, ci_low, ci_high, precise FROM samples "
                                f"WHERE role IN ({marks}) ORDER BY measured_at", tuple(roles))
        for arch_id, name, role, text, ms, low, high, precise in rows:
            try:
                spec = ArchSpec.from_dict(json.loads(text))
            except (ValueError, SpecError) as error:
                raise LUTCorruptError(f"{self.path}: the spec of {arch_id} is unreadable ({error})") from None
            found.append(Sample(arch_id, name, role, spec, float(ms), float(low), float(high), bool(precise)))
        return found


def measure_missing(store: SampleStore, backend: Any, specs: Iterable[ArchSpec], role: str,
                    progress: Callable[[int, int, ArchSpec], None] | None = None) -> int:
    """Measure (one by one, each stored at once) every spec of ``specs`` not yet in ``store``;
    return how many were measured."""
    todo: dict[str, ArchSpec] = {}
    for spec in specs:
        if spec.arch_id not in store:
            todo.setdefault(spec.arch_id, spec)
    for done, spec in enumerate(todo.values(), 1):
        store.add(spec, role, backend.measure(spec))
        if progress is not None:
            progress(done, len(todo), spec)
    return len(todo)
