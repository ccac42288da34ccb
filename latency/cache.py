"""A persistent measurement cache: SQLite, keyed by (arch_id, device stamp key).

The default file is ``$NAS_CACHE_DIR/latency.db`` (``~/.cache/nas/latency.db``). Writes are
committed one by one, so every finished measurement survives a crash. A file that is not a
cache database raises :class:`CacheCorruptError` and is never modified or deleted.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Sequence

from latency.errors import CacheCorruptError
from latency.pieces import Piece
from latency.protocol import pool
from latency.result import LatencyResult
from latency.stamp import DeviceStamp
from nas.runtime.paths import cache_dir
from nas.spec.arch import ArchSpec

SCHEMA_VERSION = 2
_V1_COLUMNS = ("arch_id", "stamp_key", "median_ms", "p10_ms", "p90_ms", "iqr_ms", "repeats", "cv", "stamp",
               "spec_name", "measured_at")
_COLUMNS = ("arch_id", "stamp_key", "result", "spec_name", "measured_at", "count")


def default_cache_path() -> Path:
    return cache_dir() / "latency.db"


class LatencyCache:
    """Measured results by (arch_id, stamp). Safe to share between processes on one host.

    A repeated measurement is *pooled* with the stored one (:func:`latency.protocol.pool`): the
    samples accumulate and the interval narrows; ``count`` says how many measurements a row holds.
    Rows of the version-1 layout (one median per row) are still read, never rewritten.
    """

    def __init__(self, path: str | Path | None = None, tolerance: float = 0.02) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.tolerance = tolerance
        if self.path.exists() and not self.path.is_file():
            raise CacheCorruptError(f"latency cache {self.path} is not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(str(self.path), timeout=60.0)
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables - {"meta", "measurements", "results"}:
                raise CacheCorruptError(f"latency cache {self.path} is a database of something else "
                                        f"(tables {sorted(tables)}); refusing to touch it")
            for table, expected in (("measurements", _V1_COLUMNS), ("results", _COLUMNS)):
                if table in tables:
                    columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
                    if tuple(columns) != expected:
                        raise CacheCorruptError(f"latency cache {self.path} has an unknown layout "
                                                f"(table {table}, columns {columns})")
            self._v1 = "measurements" in tables
            if "results" not in tables:
                with connection:
                    connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                    connection.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                    connection.execute(
                        "CREATE TABLE IF NOT EXISTS results (arch_id TEXT NOT NULL, stamp_key TEXT NOT NULL, "
                        "result TEXT NOT NULL, spec_name TEXT, measured_at REAL NOT NULL, count INTEGER NOT NULL, "
                        "PRIMARY KEY (arch_id, stamp_key))")
            return connection
        except sqlite3.DatabaseError as error:
            raise CacheCorruptError(f"latency cache {self.path} is unreadable ({error}); it was left untouched, "
                                    f"move it away or point NAS_CACHE_DIR elsewhere") from None

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "LatencyCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:  # a cache travels (e.g. to a Ray worker) as its path
        return {"path": str(self.path), "tolerance": self.tolerance}

    def __setstate__(self, state: dict) -> None:
        self.path = Path(state["path"])
        self.tolerance = float(state.get("tolerance", 0.02))
        self._connection = self._open()

    def _execute(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        try:
            with self._connection:
                return self._connection.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as error:
            raise CacheCorruptError(f"latency cache {self.path} is unreadable ({error}); "
                                    "it was left untouched") from None

    def get(self, arch_id: str, stamp: DeviceStamp) -> LatencyResult | None:
        """The cached result for ``arch_id`` under exactly ``stamp``, or None."""
        rows = self._execute("SELECT result FROM results WHERE arch_id = ? AND stamp_key = ?", (arch_id, stamp.key))
        try:
            if rows:
                return LatencyResult.from_dict(json.loads(rows[0][0]))
            if self._v1:
                old = self._execute("SELECT median_ms, p10_ms, p90_ms, iqr_ms, repeats, cv, stamp FROM measurements "
                                    "WHERE arch_id = ? AND stamp_key = ?", (arch_id, stamp.key))
                if old:
                    median, p10, p90, iqr, repeats, cv, stamp_json = old[0]
                    return LatencyResult(median_ms=median, p10_ms=p10, p90_ms=p90, iqr_ms=iqr, repeats=repeats,
                                         cv=cv, stamp=DeviceStamp.from_dict(json.loads(stamp_json)))
        except (ValueError, TypeError, KeyError) as error:
            raise CacheCorruptError(f"latency cache {self.path}: bad row for {arch_id}: {error}") from None
        return None

    def count(self, arch_id: str, stamp: DeviceStamp) -> int:
        """How many measurements the row of ``arch_id`` under ``stamp`` pools (0: none)."""
        rows = self._execute("SELECT count FROM results WHERE arch_id = ? AND stamp_key = ?", (arch_id, stamp.key))
        return int(rows[0][0]) if rows else 0

    def put(self, arch_id: str, result: LatencyResult, spec_name: str = "") -> LatencyResult:
        """Pool ``result`` into the row of ``arch_id`` under its stamp; returns the pooled result."""
        stored = self._execute("SELECT result, count FROM results WHERE arch_id = ? AND stamp_key = ?",
                               (arch_id, result.stamp.key))
        pooled, count = result, 1
        if stored:
            try:
                previous = LatencyResult.from_dict(json.loads(stored[0][0]))
            except (ValueError, TypeError, KeyError) as error:
                raise CacheCorruptError(f"latency cache {self.path}: bad row for {arch_id}: {error}") from None
            pooled, count = pool(previous, result, self.tolerance), int(stored[0][1]) + 1
        self._execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                      (arch_id, result.stamp.key, json.dumps(pooled.to_dict()), spec_name, time.time(), count))
        return pooled

    def __len__(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM results")[0][0])

    def stamps(self) -> list[str]:
        """The distinct stamp keys in the cache."""
        return [row[0] for row in self._execute("SELECT DISTINCT stamp_key FROM results ORDER BY stamp_key")]


class CachedBackend:
    """Wraps a backend: answers from the cache when it can, measures and stores otherwise.

    A hit that is not ``precise`` is measured again and pooled with the stored samples, so its
    interval narrows; ``remeasure=True`` always measures (and pools).
    """

    def __init__(self, backend, cache: LatencyCache, remeasure: bool = False) -> None:
        self.backend = backend
        self.cache = cache
        self.remeasure = remeasure
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"CachedBackend({self.backend!r}, {self.cache.path}, remeasure={self.remeasure})"

    def stamp(self, spec: ArchSpec | None = None, *, resolution: int | None = None) -> DeviceStamp:
        return self.backend.stamp(spec, resolution=resolution)

    def cached(self, spec: ArchSpec) -> LatencyResult | None:
        """The cached result for ``spec`` under this backend's stamp (never measures)."""
        return self.cache.get(spec.arch_id, self.stamp(spec))

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self.measure_many([spec])[0]

    def measure_many(self, specs: Sequence[ArchSpec]) -> list[LatencyResult]:
        results: list[LatencyResult | None] = [None] * len(specs)
        for index, result in self.measure_iter(specs):
            results[index] = result
        return [result for result in results if result is not None]

    def measure_iter(self, specs: Sequence[ArchSpec]) -> Iterator[tuple[int, LatencyResult]]:
        """Yield ``(index, result)``: cache hits first, then each measured spec as it finishes
        (stored at once, so an error later loses nothing). Duplicates are measured once."""
        specs = list(specs)
        todo: dict[str, list[int]] = {}
        for index, spec in enumerate(specs):
            hit = None if self.remeasure else self.cached(spec)
            if hit is None or not hit.precise:
                todo.setdefault(spec.arch_id, []).append(index)
            else:
                self.hits += 1
                yield index, hit
        if not todo:
            return
        firsts = [indices[0] for indices in todo.values()]
        for position, result in self._measure([specs[index] for index in firsts]):
            spec = specs[firsts[position]]
            result = self.cache.put(spec.arch_id, result, spec.name)
            for index in todo[spec.arch_id]:
                self.misses += 1
                yield index, result

    def _measure(self, specs: list[ArchSpec]) -> Iterator[tuple[int, LatencyResult]]:
        iterate = getattr(self.backend, "measure_iter", None)
        if iterate is not None:
            return iterate(specs)
        return enumerate(self.backend.measure_many(specs))

    def measure_pieces(self, pieces: Sequence[Piece], resolution: int) -> Iterator[tuple[Piece, LatencyResult]]:
        """Pieces are cached by look-up tables, not here: passed straight to the wrapped backend."""
        return self.backend.measure_pieces(pieces, resolution)
