"""A persistent measurement cache: SQLite, keyed by (arch_id, device stamp key).

The default file is ``$NAS_CACHE_DIR/latency.db`` (``~/.cache/nas/latency.db``). Writes are
committed one by one, so every finished measurement survives a crash. A file that is not a
cache database raises :class:`CacheCorruptError` and is never modified or deleted.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Sequence

from latency.errors import CacheCorruptError
from latency.pieces import Piece
from latency.result import LatencyResult
from latency.stamp import DeviceStamp
from nas.spec.arch import ArchSpec

SCHEMA_VERSION = 1
_COLUMNS = ("arch_id", "stamp_key", "median_ms", "p10_ms", "p90_ms", "iqr_ms", "repeats", "cv", "stamp",
            "spec_name", "measured_at")


def cache_dir() -> Path:
    """``$NAS_CACHE_DIR``, else ``~/.cache/nas``."""
    return Path(os.environ.get("NAS_CACHE_DIR") or Path.home() / ".cache" / "nas")


def default_cache_path() -> Path:
    return cache_dir() / "latency.db"


class LatencyCache:
    """Measured results by (arch_id, stamp). Safe to share between processes on one host."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        if self.path.exists() and not self.path.is_file():
            raise CacheCorruptError(f"latency cache {self.path} is not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(str(self.path), timeout=60.0)
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "measurements" not in tables:
                if tables - {"meta"}:
                    raise CacheCorruptError(f"latency cache {self.path} is a database of something else "
                                            f"(tables {sorted(tables)}); refusing to touch it")
                with connection:
                    connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                    connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                    connection.execute(
                        "CREATE TABLE IF NOT EXISTS measurements (arch_id TEXT NOT NULL, stamp_key TEXT NOT NULL, "
                        "median_ms REAL NOT NULL, p10_ms REAL NOT NULL, p90_ms REAL NOT NULL, iqr_ms REAL NOT NULL, "
                        "repeats INTEGER NOT NULL, cv REAL NOT NULL, stamp TEXT NOT NULL, spec_name TEXT, "
                        "measured_at REAL NOT NULL, PRIMARY KEY (arch_id, stamp_key))")
            else:
                columns = [row[1] for row in connection.execute("PRAGMA table_info(measurements)")]
                if tuple(columns) != _COLUMNS:
                    raise CacheCorruptError(f"latency cache {self.path} has an unknown layout (columns {columns})")
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
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.path = Path(state["path"])
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
        rows = self._execute("SELECT median_ms, p10_ms, p90_ms, iqr_ms, repeats, cv, stamp FROM measurements "
                             "WHERE arch_id = ? AND stamp_key = ?", (arch_id, stamp.key))
        if not rows:
            return None
        median, p10, p90, iqr, repeats, cv, stamp_json = rows[0]
        try:
            stored = DeviceStamp.from_dict(json.loads(stamp_json))
            return LatencyResult(median_ms=median, p10_ms=p10, p90_ms=p90, iqr_ms=iqr, repeats=repeats, cv=cv,
                                 stamp=stored)
        except (ValueError, TypeError) as error:
            raise CacheCorruptError(f"latency cache {self.path}: bad row for {arch_id}: {error}") from None

    def put(self, arch_id: str, result: LatencyResult, spec_name: str = "") -> None:
        """Store (or replace) the result for ``arch_id`` under its stamp."""
        self._execute("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (arch_id, result.stamp.key, result.median_ms, result.p10_ms, result.p90_ms, result.iqr_ms,
                       result.repeats, result.cv, json.dumps(result.stamp.to_dict()), spec_name, time.time()))

    def __len__(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM measurements")[0][0])

    def stamps(self) -> list[str]:
        """The distinct stamp keys in the cache."""
        return [row[0] for row in self._execute("SELECT DISTINCT stamp_key FROM measurements ORDER BY stamp_key")]


class CachedBackend:
    """Wraps a backend: answers from the cache when it can, measures and stores otherwise.

    ``remeasure=True`` always measures (and overwrites the cached figure).
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
            if hit is None:
                todo.setdefault(spec.arch_id, []).append(index)
            else:
                self.hits += 1
                yield index, hit
        if not todo:
            return
        firsts = [indices[0] for indices in todo.values()]
        for position, result in self._measure([specs[index] for index in firsts]):
            spec = specs[firsts[position]]
            self.cache.put(spec.arch_id, result, spec.name)
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
