"""``nas latency``: measure, build-lut, check and predict through the real CLI, and its
one-line errors (exit code 2) on bad input."""
from __future__ import annotations

import json

import pytest

from latency.lut import LatencyLUT
from latency.sampling import space_specs
from latency.stamp import local_stamp
from nas.cli import main
from tests.support.latency import tiny_spec

QUICK = ["--warmup", "1", "--min-repeats", "3", "--max-repeats", "5", "--tolerance", "0.5"]


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow  # measures
def test_measure_prints_a_stamped_median_and_caches_it(tmp_path, capsys) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_spec().to_yaml())
    code, out, _ = _run(capsys, "latency", "measure", str(path), "--resolution", "16", "--json", *QUICK)
    assert code == 0
    first = json.loads(out)
    assert first["cached"] is False and first["median_ms"] > 0 and first["stamp"]["resolution"] == 16
    assert (tmp_path / "cache" / "latency.db").is_file()
    code, out, _ = _run(capsys, "latency", "measure", str(path), "--resolution", "16", "--json", *QUICK)
    assert json.loads(out)["cached"] is True and json.loads(out)["median_ms"] == first["median_ms"]
    code, out, _ = _run(capsys, "latency", "measure", str(path), "--resolution", "16", "--remeasure", *QUICK)
    assert code == 0 and "measured" in out and "ms" in out


@pytest.mark.parametrize("extra, message", [
    (["--device", "TPU"], "unknown device 'TPU'"),
    (["--timeout", "0.01", "--no-cache"], "made no progress within 0.01 s"),
])
def test_measure_errors_are_one_line_with_exit_2(tmp_path, capsys, extra, message) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_spec().to_yaml())
    code, _, err = _run(capsys, "latency", "measure", str(path), "--resolution", "16", *extra)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_unbuildable_spec_or_a_corrupt_cache_is_reported_and_untouched(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_spec().to_yaml().replace("kind: mbconv", "kind: transformer"))
    code, _, err = _run(capsys, "latency", "measure", str(bad))
    assert code == 2 and "blocks[0].kind" in err
    cache = tmp_path / "broken.db"
    cache.write_bytes(b"not a database at all" * 64)
    good = tmp_path / "tiny.yaml"
    good.write_text(tiny_spec().to_yaml())
    code, _, err = _run(capsys, "latency", "measure", str(good), "--cache", str(cache))
    assert code == 2 and "latency cache" in err and "unreadable" in err
    assert cache.read_bytes() == b"not a database at all" * 64


@pytest.mark.slow  # measures
def test_build_check_and_predict_a_table(tmp_path, capsys) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    for mid in (16, 256, 1024):  # far apart: the calibration's slope must be positive, not noise
        (specs / f"tiny{mid}.yaml").write_text(tiny_spec(mid=mid, name=f"tiny{mid}").to_yaml())
    lut = tmp_path / "lut"
    code, out, err = _run(capsys, "latency", "build-lut", "--specs", str(specs), "--out", str(lut),
                          "--resolution", "16", "--calibrate", "3", *QUICK)
    assert code == 0, err
    assert "measured" in out and "additivity" in out and "calibrated" in out
    assert "build-lut: " in err  # the progress counter
    meta = json.loads((lut / "meta.json").read_text())
    assert meta["calibration"]["n"] == 3 and meta["stamp"]["resolution"] == 16
    assert meta["sources"] == [{"kind": "specs", "dir": str(specs)}]

    code, out, _ = _run(capsys, "latency", "build-lut", "--specs", str(specs), "--out", str(lut),
                        "--resolution", "16", "--calibrate", "0", *QUICK)
    assert code == 0 and "0 measured" in out  # resumable: nothing left to measure

    code, out, err = _run(capsys, "latency", "check", "--lut", str(lut), "--samples", "3", *QUICK)
    assert code == 0, err
    assert "within +-10%" in out and "Spearman" in out
    assert sum(name in out for name in ("tiny16", "tiny256", "tiny1024")) == 3

    pruned = tmp_path / "pruned.yaml"
    pruned.write_text(tiny_spec(mid=32).to_yaml())
    code, out, _ = _run(capsys, "latency", "predict", str(pruned), "--lut", str(lut), "--breakdown")
    assert code == 0 and "interpolated" in out and "predicted" in out

    wide = tmp_path / "wide.yaml"
    wide.write_text(tiny_spec(mid=2048).to_yaml())  # beyond the widest piece measured (1024)
    code, _, err = _run(capsys, "latency", "predict", str(wide), "--lut", str(lut))
    assert code == 2 and "look-up table miss" in err and "mid channels 2048" in err

    (lut / "meta.json").write_text("{ truncated")
    code, _, err = _run(capsys, "latency", "check", "--lut", str(lut), "--samples", "3")
    assert code == 2 and "meta.json" in err
    assert (lut / "meta.json").read_text() == "{ truncated"


def test_check_refuses_a_table_from_another_device(tmp_path, capsys) -> None:
    foreign = local_stamp("CPU", threads=1, batch=1, resolution=16)
    import dataclasses

    LatencyLUT(tmp_path / "lut", dataclasses.replace(foreign, cpu_model="Some Other CPU")).close()
    code, _, err = _run(capsys, "latency", "check", "--lut", str(tmp_path / "lut"), "--samples", "1", "--refs")
    assert code == 2 and "Some Other CPU" in err


FIT_QUICK = ["--resolution", "16", "--threads", "1", "--warmup", "1", "--min-repeats", "3", "--max-repeats", "5",
             "--tolerance", "0.5", "--max-seconds", "2"]


@pytest.mark.slow  # measures
def test_fit_a_predictor_check_it_on_held_out_networks_and_predict(tmp_path, capsys) -> None:
    lut = tmp_path / "fitted"
    fit = ["latency", "fit", "--lut", str(lut), "--space", "mnasnet", "--samples", "16", "--netadapt", "0",
           "--no-refs", "--rounds", "1", "--per-round", "2", "--model", "nnls", *FIT_QUICK]
    code, out, err = _run(capsys, *fit)
    assert code == 0, err
    assert "model nnls, fitted on 18 networks" in out and "nnls" in out and "within +-5/10/20%" in out
    assert "measuring space networks: 16/16" in err and "ETA" in err  # progress with an ETA
    assert "round 1: measuring where the error is largest: 2/2" in err
    saved = json.loads((lut / "predictor.json").read_text())
    assert saved["model"] == "nnls" and len(saved["training"]) == 18 and saved["stamp"]["resolution"] == 16
    assert 0 <= saved["band"] < 1

    code, out, err = _run(capsys, *fit)  # resumable: every network is stored already
    assert code == 0 and "fitted on 18 networks" in out and "measuring" not in err

    code, out, err = _run(capsys, "latency", "check", "--lut", str(lut), "--samples", "4", "--json", *QUICK)
    assert code == 0, err
    report = json.loads(out)
    assert len(report["rows"]) == 4 and not {row["arch_id"] for row in report["rows"]} & set(saved["training"])
    assert {"within_5pct", "within_10pct", "within_20pct", "spearman", "kendall", "max_abs_pct_error"} <= set(
        report["accuracy"])
    assert 0 <= report["within_label_ci"] <= 1 and (lut / "check.png").stat().st_size > 1000
    assert all(row["ci_low_ms"] <= row["measured_ms"] <= row["ci_high_ms"] for row in report["rows"])

    sampled = tmp_path / "sampled.yaml"
    sampled.write_text(space_specs("mnasnet", 1, seed=77)[0][0].to_yaml())
    code, out, _ = _run(capsys, "latency", "predict", str(sampled), "--lut", str(lut))
    assert code == 0 and "by the fitted nnls model at 16 px" in out

    # Bad input: one line naming what is wrong, exit 2, nothing lost.
    code, _, err = _run(capsys, "latency", "predict", "mobilenet_v3_small", "--lut", str(lut))
    assert code == 2 and "act.hswish.elems" in err and "no training network had" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, *fit[:fit.index("--model")], "--model", "gbt", *FIT_QUICK)
    assert code == 2 and "needs at least 30 measured networks" in err and "has 18" in err
    code, _, err = _run(capsys, *fit[:-len(FIT_QUICK)], *FIT_QUICK[:2], "--threads", "2", *FIT_QUICK[4:])
    assert code == 2 and "use another directory" in err
    (lut / "predictor.json").write_text('{"format": "nas-latency-predictor", "version": 1')
    code, _, err = _run(capsys, "latency", "predict", str(sampled), "--lut", str(lut))
    assert code == 2 and "predictor.json is unreadable" in err
    assert len(json.loads((lut / "meta.json").read_text())["stamp"]) > 0
