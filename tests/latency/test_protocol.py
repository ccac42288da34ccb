"""The paired protocol's statistics, the pooled cache and the anchor store (pure, no device)."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import statistics

import numpy as np
import pytest

from latency.anchors import AnchorStore
from latency.cache import LatencyCache
from latency.errors import CacheCorruptError
from latency.protocol import ProtocolSettings, bootstrap_median, paired_result, pool, time_paired
from latency.result import LatencyResult, summarize
from latency.stamp import DeviceStamp

STAMP = DeviceStamp(device="CPU", device_model="test", cpu_model="test", cores=2, threads=1,
                    mindspore_version="2.10.0", batch=1, resolution=32, protocol="paired")


def test_the_bootstrap_interval_holds_the_median_and_narrows_with_more_blocks() -> None:
    rng = np.random.default_rng(0)
    few = list(1.5 + 0.1 * rng.standard_normal(10))
    many = list(1.5 + 0.1 * rng.standard_normal(400))
    middle, low, high = bootstrap_median(few)
    assert low <= middle <= high and middle == pytest.approx(statistics.median(few))
    _, low_many, high_many = bootstrap_median(many)
    assert high_many - low_many < (high - low) / 3  # ~sqrt(40) narrower
    assert bootstrap_median(few) == bootstrap_median(few)  # seeded: the same interval twice


def test_a_paired_result_is_the_median_ratio_at_the_anchor_scale() -> None:
    raw = summarize([3.0 + 0.01 * k for k in range(20)], STAMP)
    ratios = [1.49, 1.5, 1.51] * 10
    result = paired_result(raw, ratios, anchor_ms=2.0, tolerance=0.02)
    assert result.estimate_ms == pytest.approx(3.0) and result.anchor_ms == 2.0 and result.blocks == 30
    assert result.ci_low_ms <= result.estimate_ms <= result.ci_high_ms and result.precise
    assert result.median_ms == raw.median_ms  # the raw calls stay as they were
    assert LatencyResult.from_dict(result.to_dict()) == result
    loose = paired_result(raw, [1.0, 2.0, 1.2, 1.9], anchor_ms=2.0, tolerance=0.02)
    assert not loose.precise and loose.half_width > 0.02 and "IMPRECISE" in loose.describe()


def test_pooling_two_measurements_narrows_the_interval() -> None:
    rng = np.random.default_rng(1)
    raw = summarize([3.0] * 12, STAMP)
    first = paired_result(raw, list(1.5 + 0.2 * rng.standard_normal(12)), 2.0, 0.02)
    second = paired_result(raw, list(1.5 + 0.2 * rng.standard_normal(12)), 2.0, 0.02)
    pooled = pool(first, second, 0.02)
    assert len(pooled.samples) == 24 and pooled.blocks == 24
    assert pooled.half_width < max(first.half_width, second.half_width)
    other = dataclasses.replace(second, stamp=dataclasses.replace(STAMP, threads=2))
    assert pool(first, other, 0.02) is other  # another stamp is never pooled


def test_the_cache_pools_repeated_measurements_and_counts_them(tmp_path) -> None:
    cache = LatencyCache(tmp_path / "latency.db")
    raw = summarize([3.0] * 12, STAMP)
    first = paired_result(raw, [1.4, 1.6] * 6, 2.0, 0.02)
    assert cache.put("abc", first) == first and cache.count("abc", STAMP) == 1
    pooled = cache.put("abc", paired_result(raw, [1.5] * 12, 2.0, 0.02))
    assert cache.count("abc", STAMP) == 2 and len(pooled.samples) == 24
    assert LatencyCache(tmp_path / "latency.db").get("abc", STAMP) == pooled


def test_a_version_one_cache_is_still_read_and_never_rewritten(tmp_path) -> None:
    path = tmp_path / "old.db"
    plain = dataclasses.replace(STAMP, protocol="plain")
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        old.execute("CREATE TABLE measurements (arch_id TEXT NOT NULL, stamp_key TEXT NOT NULL, median_ms REAL NOT "
                    "NULL, p10_ms REAL NOT NULL, p90_ms REAL NOT NULL, iqr_ms REAL NOT NULL, repeats INTEGER NOT NULL, "
                    "cv REAL NOT NULL, stamp TEXT NOT NULL, spec_name TEXT, measured_at REAL NOT NULL, "
                    "PRIMARY KEY (arch_id, stamp_key))")
        old.execute("INSERT INTO measurements VALUES (?, ?, 4.0, 3.5, 4.5, 0.5, 20, 0.1, ?, 'x', 0)",
                    ("abc", plain.key, json.dumps(plain.to_dict())))
    found = LatencyCache(path).get("abc", plain)
    assert found is not None and found.estimate_ms == 4.0 and not found.precise  # measured again when asked
    with sqlite3.connect(path) as old:
        assert old.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 1


def test_the_anchor_store_pools_blocks_per_stamp(tmp_path) -> None:
    store = AnchorStore(tmp_path / "anchors.db")
    store.add(STAMP, [2.0, 2.2, 1.8])
    assert store.pooled(STAMP) == pytest.approx(2.0)
    assert store.pooled(STAMP, [5.0, 5.0, 5.0, 5.0]) == pytest.approx(5.0)  # fresh blocks count too
    with pytest.raises(ValueError, match="no anchor blocks"):
        store.pooled(dataclasses.replace(STAMP, threads=2))
    (tmp_path / "other.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CacheCorruptError, match="other.db"):
        AnchorStore(tmp_path / "other.db")
    assert (tmp_path / "other.db").read_bytes() == b"not a database at all" * 100


def test_the_paired_timer_alternates_and_stops_at_the_tolerance() -> None:
    order: list[str] = []
    timing = time_paired(lambda: order.append("c"), lambda: order.append("a"), None,
                         ProtocolSettings(warmup=1, block_calls=2, min_blocks=4, max_blocks=50, tolerance=10.0))
    assert timing.precise and len(timing.ratios) == 4 and len(timing.anchor_blocks) == 5
    # one warm-up call each, an anchor block, then candidate and anchor blocks in turn
    assert "".join(order) == "ca" + "aa" + "ccaa" * 4
    capped = time_paired(lambda: None, lambda: None, None,
                         ProtocolSettings(warmup=0, block_calls=1, min_blocks=2, max_blocks=6, tolerance=1e-12))
    assert len(capped.ratios) == 6 and not capped.precise  # bounded by max_blocks, flagged
