"""Latency building blocks that need no device: stamps, statistics, pieces, table arithmetic,
the cache file and the spec sources."""
from __future__ import annotations

import json
import sqlite3
import statistics

import numpy as np
import pytest

from latency import (
    CacheCorruptError,
    DeviceStamp,
    LatencyResult,
    LUTCorruptError,
    LUTMissError,
    StampMismatchError,
    UnknownDeviceError,
    summarize,
)
from latency.cache import CachedBackend, LatencyCache
from latency.errors import CalibrationError
from latency.lut import LatencyLUT, accuracy, fit_calibration
from latency.pieces import overhead_piece, spec_pieces, unique_pieces
from latency.result import converged, median_interval
from latency.sampling import (
    CALIBRATION_POOL,
    calibration_specs,
    load_spec_dir,
    reference_variants,
    space_specs,
    spread_by_cost,
)
from latency.stamp import device_name, local_stamp, parse_device
from nas.spec import SpecError
from nas.spec.layers import plan_layers
from nas.spec.profile import profile
from search_spaces import references
from tests.support.latency import tiny_spec


def _stamp(**changes) -> DeviceStamp:
    fields = {"device": "CPU", "device_model": "Test CPU", "cpu_model": "Test CPU", "cores": 2, "threads": 2,
              "mindspore_version": "2.10.0", "batch": 1, "resolution": 16, "mode": "GRAPH"}
    fields.update(changes)
    return DeviceStamp(**fields)


def _result(ms: float, stamp: DeviceStamp) -> LatencyResult:
    """Eleven calls within +-1% of ``ms``: enough for the median's interval, so a precise result."""
    return summarize([ms * (1 + 0.002 * k) for k in range(-5, 6)], stamp)


# ----- device and stamp ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("CPU", ("CPU", None)), ("cpu", ("CPU", None)), ("GPU:1", ("GPU", 1)),
                                            ("ascend:0", ("Ascend", 0)), (" gpu ", ("GPU", None))])
def test_devices_parse_to_a_target_and_an_id(text, expected) -> None:
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["TPU", "", "GPU:x", "CPU:1", "npu:0", 3])
def test_an_unknown_device_is_a_named_error(text) -> None:
    with pytest.raises(UnknownDeviceError, match="unknown device"):
        parse_device(text)


def test_the_stamp_key_separates_everything_that_changes_latency() -> None:
    base = _stamp()
    assert DeviceStamp.from_dict(base.to_dict()) == base
    variants = [_stamp(threads=1), _stamp(batch=8), _stamp(resolution=224), _stamp(mindspore_version="2.9.0"),
                _stamp(cpu_model="Other"), _stamp(mode="PYNATIVE"), _stamp(device="GPU", device_model="A100")]
    keys = {base.key} | {variant.key for variant in variants}
    assert len(keys) == len(variants) + 1
    with pytest.raises(ValueError, match="unknown key 'gpu'"):
        DeviceStamp.from_dict({**base.to_dict(), "gpu": 1})
    with pytest.raises(ValueError, match="threads"):
        _stamp(threads=0)


def test_the_local_stamp_records_this_host() -> None:
    import importlib.metadata

    stamp = local_stamp("cpu", threads=1, batch=4, resolution=64)
    assert stamp.device == "CPU" and stamp.threads == 1 and stamp.batch == 4 and stamp.resolution == 64
    assert stamp.mindspore_version == importlib.metadata.version("mindspore")
    assert stamp.cores >= 1 and stamp.cpu_model
    assert device_name("gpu:2") == "GPU:2"


# ----- statistics ---------------------------------------------------------------------------------


def test_summary_statistics_match_numpy() -> None:
    times = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 2.5]
    result = summarize(times, _stamp())
    assert result.median_ms == pytest.approx(np.median(times))
    assert result.p10_ms == pytest.approx(np.percentile(times, 10))
    assert result.p90_ms == pytest.approx(np.percentile(times, 90))
    assert result.iqr_ms == pytest.approx(np.percentile(times, 75) - np.percentile(times, 25))
    assert result.cv == pytest.approx(np.std(times) / np.mean(times))
    assert result.repeats == 7
    assert LatencyResult.from_dict(result.to_dict()) == result
    with pytest.raises(ValueError, match="median_ms"):
        LatencyResult(median_ms=float("nan"), p10_ms=1, p90_ms=1, iqr_ms=0, repeats=1, cv=0, stamp=_stamp())


def test_repeats_stop_only_once_the_median_is_pinned_down() -> None:
    rng = np.random.default_rng(0)
    steady = list(10 + rng.normal(0, 0.05, 30))
    noisy = list(10 + rng.normal(0, 3.0, 30))
    assert converged(steady, 0.02)
    assert not converged(noisy, 0.02)
    assert not converged(steady[:5], 0.5)  # too few runs for any interval
    low, high = median_interval(steady)
    assert low <= statistics.median(steady) <= high


# ----- pieces -------------------------------------------------------------------------------------


def test_pieces_are_the_stem_every_layer_and_the_head() -> None:
    spec = references.get("mobilenet_v3_large")
    pieces = spec_pieces(spec, 224)
    assert len(pieces) == len(plan_layers(spec)) + 2
    assert pieces[0].kind == "stem" and pieces[-1].kind == "head"
    assert [piece.key.split("|p")[0] for piece in pieces[1:-1]] == [plan.signature() for plan in plan_layers(spec)]
    repeated = [piece for piece in pieces if piece.name in ("blocks.5.1", "blocks.5.2")]
    assert repeated[0].key == repeated[1].key  # the same layer twice: measured once
    assert len(unique_pieces([spec, spec], 224)) == len({piece.key for piece in pieces})
    narrow = spec_pieces(spec.with_block(5, expand=(672, 480, 960)), 224)
    assert narrow[-3].name == "blocks.5.1"
    assert narrow[-3].key != pieces[-3].key and narrow[-3].base == pieces[-3].base  # only widths differ
    assert overhead_piece().key not in {piece.key for piece in pieces}


# ----- look-up table arithmetic ---------------------------------------------------------------------


def _true_layer_ms(i: int, m: int, o: int) -> float:
    """A made-up cost that is additive in its channel terms (what channel interpolation assumes)."""
    return 0.2 + 0.01 * m + 0.003 * i + 0.004 * o


def _table_with(tmp_path, specs, cost=_true_layer_ms) -> LatencyLUT:
    lut = LatencyLUT(tmp_path / "lut", _stamp())
    lut.add(overhead_piece(), _result(0.1, lut.stamp))
    for spec in specs:
        for piece in spec_pieces(spec, lut.resolution):
            lut.add(piece, _result(cost(*piece.coords) if piece.kind == "layer" else 0.5, lut.stamp))
    return lut


def test_the_table_sums_pieces_less_the_repeated_launch_overhead(tmp_path) -> None:
    spec = tiny_spec(mid=16)
    lut = _table_with(tmp_path, [spec])
    layer = _true_layer_ms(8, 16, 8)
    assert lut.predict_summed(spec) == pytest.approx(0.5 + layer + 0.5 - 2 * 0.1)
    assert lut.predict(spec) == lut.predict_summed(spec)  # no calibration yet


def test_the_table_interpolates_a_width_between_measured_ones(tmp_path) -> None:
    lut = _table_with(tmp_path, [tiny_spec(mid=16), tiny_spec(mid=48)])
    breakdown = lut.breakdown(tiny_spec(mid=32))
    (_, layer_ms, how), = [row for row in breakdown if row[0].kind == "layer"]
    assert how == "interpolated"
    assert layer_ms == pytest.approx(_true_layer_ms(8, 32, 8))
    with pytest.raises(LUTMissError, match=r"mid channels 64 outside the measured range \[16, 48\]"):
        lut.predict(tiny_spec(mid=64))
    with pytest.raises(LUTMissError, match="nothing of this structure"):
        lut.predict(tiny_spec(mid=32, se=True))


def test_the_table_combines_a_pruned_expansion_with_a_pruned_group(tmp_path) -> None:
    measured = [tiny_spec(mid=48, out=24), tiny_spec(mid=16, out=24), tiny_spec(mid=48, out=8)]
    lut = _table_with(tmp_path, measured)
    (_, layer_ms, how), = [row for row in lut.breakdown(tiny_spec(mid=32, out=16)) if row[0].kind == "layer"]
    assert how == "interpolated"
    assert layer_ms == pytest.approx(_true_layer_ms(8, 32, 16))


def test_a_point_off_two_grid_lines_is_found_from_the_grid_centre(tmp_path) -> None:
    """NetAdapt's grid: lines through one centre. Many anchors on one line are nearer the query
    than the centre, yet only the centre reaches it by two measured moves."""
    measured = [tiny_spec(mid=mid, out=24) for mid in range(8, 401, 8)] + [tiny_spec(mid=400, out=8)]
    lut = _table_with(tmp_path, measured)
    (_, layer_ms, how), = [row for row in lut.breakdown(tiny_spec(mid=200, out=8)) if row[0].kind == "layer"]
    assert how == "interpolated"
    assert layer_ms == pytest.approx(_true_layer_ms(8, 200, 8))


def test_calibration_recovers_a_line_and_is_saved(tmp_path) -> None:
    summed = [10.0, 20.0, 30.0, 45.0]
    measured = [2 * value + 3 for value in summed]
    calibration = fit_calibration(summed, measured)
    assert calibration.a == pytest.approx(2) and calibration.b == pytest.approx(3)
    lut = _table_with(tmp_path, [tiny_spec()])
    lut.set_calibration(calibration, {"n": 4})
    reopened = LatencyLUT(tmp_path / "lut")
    assert reopened.calibration == calibration
    assert reopened.predict(tiny_spec()) == pytest.approx(2 * reopened.predict_summed(tiny_spec()) + 3)
    quality = accuracy([1.0, 2.15, 2.9], [1.0, 2.0, 3.0])
    assert quality.within_10pct == pytest.approx(1.0) and quality.spearman == pytest.approx(1.0)
    assert accuracy([1.0, 2.5], [1.0, 2.0]).within_10pct == pytest.approx(0.5)
    with pytest.raises(CalibrationError, match="different predicted latency"):
        fit_calibration([1.0, 1.0, 1.0], [2.0, 3.0, 4.0])


def test_a_calibration_that_cannot_be_right_is_refused() -> None:
    with pytest.raises(CalibrationError, match="at least 3 networks"):
        fit_calibration([10.0, 20.0], [12.0, 21.0])
    # Three networks whose sums fall as their measurements rise: a line through them "fits", but
    # it would turn the table's ordering upside down.
    with pytest.raises(CalibrationError, match="slope is -"):
        fit_calibration([700.0, 760.0, 820.0], [700.0, 690.0, 680.0])


def test_a_table_keeps_its_entries_and_refuses_a_foreign_stamp(tmp_path) -> None:
    lut = _table_with(tmp_path, [tiny_spec()])
    count = len(lut)
    lut.close()
    reopened = LatencyLUT(tmp_path / "lut", _stamp())
    assert len(reopened) == count
    with pytest.raises(StampMismatchError, match="r16"):
        LatencyLUT(tmp_path / "lut", _stamp(threads=1))
    with pytest.raises(StampMismatchError):
        reopened.add(overhead_piece(), _result(1.0, _stamp(threads=1)))


def test_a_corrupt_table_is_a_named_error_and_stays_untouched(tmp_path) -> None:
    _table_with(tmp_path, [tiny_spec()]).close()
    meta = tmp_path / "lut" / "meta.json"
    entries = tmp_path / "lut" / "entries.sqlite"
    original = meta.read_text()
    meta.write_text(original[:40])
    with pytest.raises(LUTCorruptError, match="meta.json"):
        LatencyLUT(tmp_path / "lut")
    assert meta.read_text() == original[:40]
    meta.write_text(original)
    entries.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LUTCorruptError, match="entries.sqlite"):
        LatencyLUT(tmp_path / "lut")
    assert entries.read_bytes() == b"this is not sqlite" * 100
    with pytest.raises(LUTCorruptError, match="not a latency look-up table"):
        LatencyLUT(tmp_path / "nowhere")


# ----- the cache file ---------------------------------------------------------------------------------


def test_the_cache_keys_on_arch_and_stamp(tmp_path) -> None:
    cache = LatencyCache(tmp_path / "latency.db")
    spec = tiny_spec()
    result = _result(3.0, _stamp())
    cache.put(spec.arch_id, result, spec.name)
    assert cache.get(spec.arch_id, _stamp()) == result
    assert cache.get(spec.arch_id, _stamp(threads=1)) is None
    assert cache.get(tiny_spec(mid=24).arch_id, _stamp()) is None
    cache.close()
    assert LatencyCache(tmp_path / "latency.db").get(spec.arch_id, _stamp()) == result  # persistent


def test_the_cache_defaults_under_nas_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "here"))
    assert LatencyCache().path == tmp_path / "here" / "latency.db"


def test_a_corrupt_cache_is_a_named_error_and_stays_untouched(tmp_path) -> None:
    garbage = tmp_path / "latency.db"
    garbage.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(CacheCorruptError, match="unreadable"):
        LatencyCache(garbage)
    assert garbage.read_bytes() == b"\x00garbage" * 512
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(CacheCorruptError, match="something else"):
        LatencyCache(foreign)


class _CountingBackend:
    """Stands in for a device only to count calls; the real backends run in the contract suite."""

    def __init__(self) -> None:
        self.calls = 0

    def stamp(self, spec=None, *, resolution=None):
        return _stamp(resolution=resolution or spec.resolution)

    def measure_many(self, specs):
        self.calls += 1
        return [_result(1.0 + index, self.stamp(spec)) for index, spec in enumerate(specs)]


def test_the_cached_backend_measures_each_architecture_once(tmp_path) -> None:
    inner = _CountingBackend()
    cached = CachedBackend(inner, LatencyCache(tmp_path / "c.db"))
    first = cached.measure_many([tiny_spec(), tiny_spec(mid=24), tiny_spec()])
    assert inner.calls == 1 and first[0] == first[2]
    assert cached.measure(tiny_spec(mid=24)) == first[1] and inner.calls == 1 and cached.hits == 1
    CachedBackend(inner, cached.cache, remeasure=True).measure(tiny_spec())
    assert inner.calls == 2


# ----- where specs come from -----------------------------------------------------------------------------


def test_reference_variants_are_valid_distinct_and_reproducible() -> None:
    first = reference_variants(12, seed=3)
    assert [spec.arch_id for spec in first] == [spec.arch_id for spec in reference_variants(12, seed=3)]
    assert len({spec.arch_id for spec in first}) == 12
    assert {spec.arch_id for spec in first} != {spec.arch_id for spec in reference_variants(12, seed=4)}
    kernels = {block.kernel for spec in first for block in spec.blocks}
    assert {(3,), (5,)} <= kernels
    assert any(block.se is None for spec in first for block in spec.blocks)
    assert any(block.se is not None for spec in first for block in spec.blocks)
    specs, note = space_specs("refs", 3, seed=0)
    assert len(specs) == 3 and "variants" in note


def test_calibration_networks_span_the_cost_range_of_their_pool() -> None:
    source = {"kind": "space", "name": "mnasnet", "samples": 1, "seed": 0}
    pool, _ = space_specs("mnasnet", 3 * CALIBRATION_POOL, seed=500)
    costs = sorted(profile(spec, 224).madds for spec in pool)
    picked = calibration_specs(source, 3, 500, 224)
    assert calibration_specs(source, 3, 500, 224) == picked
    picked_costs = [profile(spec, 224).madds for spec in picked]
    assert picked_costs[0] == costs[0] and picked_costs[-1] == costs[-1]
    assert picked_costs == sorted(picked_costs) and len(set(picked_costs)) == 3
    # the first three draws of the same pool are what an unspread choice would have taken
    first = sorted(profile(spec, 224).madds for spec in pool[:3])
    assert picked_costs[-1] / picked_costs[0] >= first[-1] / first[0]
    assert spread_by_cost(pool[:2], 5, 224) == pool[:2]
    assert calibration_specs(source, 0, 500, 224) == []


def test_a_bad_spec_file_in_a_directory_is_named(tmp_path) -> None:
    (tmp_path / "a.yaml").write_text(tiny_spec().to_yaml())
    (tmp_path / "b.yaml").write_text(tiny_spec().to_yaml().replace("kind: mbconv", "kind: wat"))
    with pytest.raises(SpecError, match="b.yaml"):
        load_spec_dir(tmp_path)
    (tmp_path / "b.yaml").unlink()
    assert len(load_spec_dir(tmp_path)) == 1
    json.dumps([spec.to_dict() for spec in load_spec_dir(tmp_path)])


def test_a_noisy_overhead_figure_cannot_make_a_prediction_negative(tmp_path) -> None:
    lut = _table_with(tmp_path, [tiny_spec()])
    lut.add(overhead_piece(), _result(5.0, lut.stamp))  # a spike: larger than every piece
    assert lut.overhead_ms == pytest.approx(_true_layer_ms(8, 16, 8))  # capped by the fastest piece
    assert lut.predict_summed(tiny_spec()) >= _true_layer_ms(8, 16, 8)
