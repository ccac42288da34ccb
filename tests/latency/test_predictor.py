"""The fitted latency predictor without a device: its features against the independent MAdds
counter, the fit's arithmetic on latencies built from known kernel costs, its file, and its
named errors. (``tests/cli/test_latency.py`` fits one on real measurements.)"""
from __future__ import annotations

import dataclasses
import json
import random
import time

import pytest

from latency import DeviceStamp, LatencyResult, LUTCorruptError, StampMismatchError
from latency.features import layer_features, network_features
from latency.lut import accuracy
from latency.predictor import (
    MIN_SAMPLES,
    MODELS,
    PREDICTOR,
    TooFewSamplesError,
    UnseenKernelError,
    adaptive_picks,
    fit_predictor,
    load_predictor,
)
from latency.samples import Sample, SampleStore
from latency.sampling import space_specs
from nas.spec.profile import profile
from netadapt.estimates import AnchoredEstimate, PooledEstimate
from search_spaces import references

RESOLUTION = 64


def _stamp(**changes) -> DeviceStamp:
    fields = {"device": "CPU", "device_model": "Test CPU", "cpu_model": "Test CPU", "cores": 2, "threads": 1,
              "mindspore_version": "2.10.0", "batch": 1, "resolution": RESOLUTION, "protocol": "paired"}
    fields.update(changes)
    return DeviceStamp(**fields)


# Known costs (ms per million MAdds or elements, ms per kernel) the fit must find again.
COSTS = {"pw.madds.s56": 0.030, "pw.madds.s28": 0.020, "pw.madds.s14": 0.015, "pw.madds.s7": 0.012,
         "pw.madds.s112": 0.040, "dw3.madds": 0.15, "dw5.madds": 0.10, "conv3.madds": 0.05, "conv1.madds": 0.02,
         "act.relu6.elems": 0.3, "se.elems": 0.5, "kernels": 0.004, "add.elems": 0.2, "dense.madds": 0.05}
OVERHEAD_MS = 0.08


def _true_ms(spec) -> float:
    features = network_features(spec, RESOLUTION)
    return OVERHEAD_MS + sum(cost * features.get(name, 0.0) for name, cost in COSTS.items())


def _samples(count: int, seed: int = 0) -> list[Sample]:
    specs, _ = space_specs("mnasnet", count, seed=seed)
    return [Sample(spec.arch_id, spec.name, "space", spec, _true_ms(spec), _true_ms(spec) * 0.98,
                   _true_ms(spec) * 1.02, True) for spec in specs]


@pytest.mark.parametrize("name", references.names())
def test_the_madds_features_add_up_to_the_independent_count(name: str) -> None:
    spec = references.get(name)
    for resolution in (224, 32):
        features = network_features(spec, resolution)
        madds = sum(value for key, value in features.items() if "madds" in key) * 1e6
        assert madds == pytest.approx(profile(spec, resolution).madds, rel=1e-9)
    pieces = layer_features(spec, 224)
    assert pieces[0].name == "stem" and pieces[-1].name == "head" and len(pieces) == 2 + sum(
        block.repeats for block in spec.blocks)


def test_nnls_finds_known_kernel_costs_again() -> None:
    train, held = _samples(40), _samples(60, seed=1)[40:]
    predictor, reports, oof = fit_predictor(train, _stamp(), "nnls")
    assert [report.model for report in reports] == ["nnls"] and len(oof["nnls"]) == 40
    for sample in held:
        assert predictor.predict(sample.spec) == pytest.approx(sample.ms, rel=1e-4)
    assert reports[0].accuracy.within_5pct == 1.0 and reports[0].accuracy.spearman > 0.999
    assert predictor.band < 1e-3  # exact labels: no error to speak of


def test_auto_tries_every_candidate_and_keeps_the_best_cross_validated() -> None:
    train = _samples(40)
    predictor, reports, _ = fit_predictor(train, _stamp(), "auto")
    assert [report.model for report in reports] == list(MODELS)
    best = max(reports, key=lambda r: (r.accuracy.within_10pct, -r.accuracy.mean_abs_pct_error))
    assert predictor.kind == best.model
    madds = next(report for report in reports if report.model == "madds")
    assert best.accuracy.mean_abs_pct_error < madds.accuracy.mean_abs_pct_error  # kernel kinds beat plain MAdds


def test_the_predictor_file_round_trips_and_refuses_what_it_cannot_price(tmp_path) -> None:
    stamp = _stamp()
    predictor, _, _ = fit_predictor(_samples(30), stamp, "nnls")
    path = predictor.save(tmp_path)
    assert path.name == PREDICTOR
    loaded = load_predictor(tmp_path)
    spec = _samples(3, seed=5)[0].spec
    assert loaded.predict(spec) == pytest.approx(predictor.predict(spec), rel=1e-12)
    assert loaded.kind == "nnls" and loaded.training == predictor.training and loaded.band == predictor.band
    loaded.require(stamp)
    with pytest.raises(StampMismatchError, match="fitted under"):
        loaded.require(_stamp(threads=2))
    blocks = list(spec.blocks)
    index = next(i for i, block in enumerate(blocks) if block.kind != "conv")
    blocks[index] = dataclasses.replace(blocks[index], kernel=(7,))  # the MnasNet space has 3x3 and 5x5 only
    with pytest.raises(UnseenKernelError, match=rf"blocks\.{index}\.0 has 'dw7.madds'"):
        loaded.predict(dataclasses.replace(spec, blocks=tuple(blocks)))
    with pytest.raises(UnseenKernelError, match="stem has 'act.hswish.elems'"):
        loaded.predict(references.get("mobilenet_v3_small"))


@pytest.mark.parametrize("damage", ["{not json", '{"format": "something else"}', '{"format": '
                                    '"nas-latency-predictor", "version": 1, "stamp": {}}'])
def test_a_corrupt_predictor_file_is_a_named_error_and_left_alone(tmp_path, damage: str) -> None:
    (tmp_path / PREDICTOR).write_text(damage)
    with pytest.raises(LUTCorruptError, match=PREDICTOR):
        load_predictor(tmp_path)
    assert (tmp_path / PREDICTOR).read_text() == damage


def test_too_few_samples_for_the_chosen_model_is_a_named_error() -> None:
    few = _samples(MIN_SAMPLES["gbt"] - 1)
    with pytest.raises(TooFewSamplesError, match=f"needs at least {MIN_SAMPLES['gbt']}"):
        fit_predictor(few, _stamp(), "gbt")
    with pytest.raises(TooFewSamplesError, match="madds"):
        fit_predictor(few[:MIN_SAMPLES["madds"] - 1], _stamp(), "auto")
    predictor, reports, _ = fit_predictor(few, _stamp(), "auto")  # auto skips what it cannot fit
    assert {report.model for report in reports} == {"madds", "nnls"}


def test_trees_are_refitted_from_the_sample_store_on_load(tmp_path) -> None:
    stamp = _stamp()
    store = SampleStore(tmp_path, stamp)
    samples = _samples(MIN_SAMPLES["gbt"])
    for sample in samples:
        result = LatencyResult(median_ms=sample.ms, p10_ms=sample.ms, p90_ms=sample.ms, iqr_ms=0.0, repeats=10,
                               cv=0.0, stamp=stamp, estimate_ms=sample.ms, ci_low_ms=sample.ci_low,
                               ci_high_ms=sample.ci_high, precise=True)
        store.add(sample.spec, "space", result)
    stored = store.samples()
    store.close()
    assert [s.arch_id for s in stored] == [s.arch_id for s in samples] and stored[0].spec == samples[0].spec
    predictor, _, _ = fit_predictor(stored, stamp, "nnls+gbt")
    predictor.save(tmp_path)
    spec = _samples(3, seed=5)[0].spec
    loaded = load_predictor(tmp_path)
    assert loaded.predict(spec) == pytest.approx(predictor.predict(spec), rel=1e-12)
    assert load_predictor(tmp_path) is loaded  # loaded (and the trees refitted) once per process
    refit, _, _ = fit_predictor(stored, stamp, "nnls")
    time.sleep(0.01)
    refit.save(tmp_path)  # a refit is loaded afresh
    assert load_predictor(tmp_path) is not loaded and load_predictor(tmp_path).kind == "nnls"
    with pytest.raises(StampMismatchError, match="measured under"):
        SampleStore(tmp_path, _stamp(threads=2))


def test_adaptive_picks_go_where_the_held_out_error_is_largest() -> None:
    train = _samples(12)
    errors = [0.0] * len(train)
    errors[7] = 0.5
    twin = dataclasses.replace(train[7].spec, name="twin", num_classes=11)  # next to the worst-predicted one
    others, _ = space_specs("mnasnet", 30, seed=9)
    pool = [*others, twin, train[0].spec]
    random.Random(0).shuffle(pool)
    picks = adaptive_picks(train, errors, pool, 4, RESOLUTION)
    assert picks[0].arch_id == twin.arch_id
    assert len(picks) == 4 and len({p.arch_id for p in picks}) == 4
    assert train[0].spec.arch_id not in {p.arch_id for p in picks}  # already measured


class _Madds:
    def predict(self, spec) -> float:
        return profile(spec, 32).madds / 1e6


def test_pooled_estimates_scale_by_the_median_ratio_of_every_measured_network() -> None:
    spec = references.get("mobilenet_v3_small")
    predicted = _Madds().predict(spec)
    pooled = PooledEstimate(_Madds(), [(10.0, 5.0), (12.0, 6.0), (30.0, 5.0)])  # one outlier of three
    assert pooled.ratio == pytest.approx(2.0)
    assert pooled(spec) == (pytest.approx(predicted), pytest.approx(2.0 * predicted))
    anchored = AnchoredEstimate(_Madds(), spec, measured_ms=7.0)
    assert anchored(spec)[1] == pytest.approx(7.0)  # one pair: the current network's own measurement
    with pytest.raises(ValueError, match="no measured network"):
        PooledEstimate(_Madds(), [(float("nan"), 5.0), (3.0, 0.0)])


def test_accuracy_reports_every_figure_the_check_prints() -> None:
    figures = accuracy([1.0, 2.08, 3.5, 4.4], [1.0, 2.0, 3.0, 5.0])  # errors 0, 4%, 16.7%, 12%
    assert (figures.within_5pct, figures.within_10pct, figures.within_20pct) == (0.5, 0.5, 1.0)
    assert figures.kendall == pytest.approx(1.0) and figures.max_abs_pct_error == pytest.approx(0.5 / 3)
    assert json.loads(json.dumps(figures.to_dict()))["within_20pct"] == 1.0
