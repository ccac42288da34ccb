"""The anchor store: the paired protocol's anchor latency, pooled per stamp across device servers.

A paired estimate is a ratio to the anchor network times the anchor's latency. That latency is
the median of every anchor block measured under the stamp (the most recent :data:`KEEP`), so
estimates taken by different servers, processes and campaigns of one stamp share one scale.
SQLite beside the latency cache (``$NAS_CACHE_DIR/anchors.db``); it is a calibration, not a
result cache, so ``--no-cache`` does not turn it off. A file that is not an anchor store raises
:class:`~latency.errors.CacheCorruptError` and is left untouched.
"""
from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path
from typing import Sequence

from latency.errors import CacheCorruptError
from latency.stamp import DeviceStamp
from nas.runtime.paths import cache_dir

KEEP = 2000


def default_anchor_path() -> Path:
    return cache_dir() / "anchors.db"


class AnchorStore:
    """Anchor block medians by stamp key."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_anchor_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = sqlite3.connect(str(self.path), timeout=60.0)
            tables = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables - {"anchor_blocks"}:
                raise CacheCorruptError(f"anchor store {self.path} is a database of something else "
                                        f"(tables {sorted(tables)}); refusing to touch it")
            with self._connection:
                self._connection.execute("CREATE TABLE IF NOT EXISTS anchor_blocks (stamp_key TEXT NOT NULL, "
                                         "ms REAL NOT NULL, at REAL NOT NULL)")
        except sqlite3.DatabaseError as error:
            raise CacheCorruptError(f"anchor store {self.path} is unreadable ({error}); it was left untouched, "
                                    "move it away or point NAS_CACHE_DIR elsewhere") from None

    def close(self) -> None:
        self._connection.close()

    def pooled(self, stamp: DeviceStamp, fresh: Sequence[float] = ()) -> float:
        """The anchor's latency under ``stamp``: the median of the stored blocks and ``fresh``."""
        rows = self._connection.execute("SELECT ms FROM anchor_blocks WHERE stamp_key = ? ORDER BY at DESC LIMIT ?",
                                        (stamp.key, KEEP)).fetchall()
        values = [row[0] for row in rows] + [float(value) for value in fresh]
        if not values:
            raise ValueError("no anchor blocks to pool")
        return float(statistics.median(values))

    def add(self, stamp: DeviceStamp, blocks: Sequence[float]) -> None:
        now = time.time()
        try:
            with self._connection:
                self._connection.executemany("INSERT INTO anchor_blocks VALUES (?, ?, ?)",
                                             [(stamp.key, float(value), now) for value in blocks])
                self._connection.execute(
                    "DELETE FROM anchor_blocks WHERE stamp_key = ? AND rowid NOT IN (SELECT rowid FROM anchor_blocks "
                    "WHERE stamp_key = ? ORDER BY at DESC LIMIT ?)", (stamp.key, stamp.key, 4 * KEEP))
        except sqlite3.DatabaseError as error:
            raise CacheCorruptError(f"anchor store {self.path} is unreadable ({error})") from None
