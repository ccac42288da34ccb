"""``latency.source: screen``: a campaign predicts every candidate with a fitted predictor and
measures only those whose reward could enter the top-k; every trial records which it got."""
from __future__ import annotations

import pytest

from nas.cli import main
from tests.support.campaign import complete, stored_trials, write_config
from tests.support.cli import run_nas

FIT = ["--space", "mnasnet", "--samples", "16", "--netadapt", "0", "--no-refs", "--rounds", "0", "--model", "nnls",
       "--resolution", "16", "--threads", "1", "--warmup", "1", "--min-repeats", "3", "--max-repeats", "5",
       "--tolerance", "0.5", "--max-seconds", "2"]


@pytest.mark.slow  # measures and trains for real
def test_a_screen_campaign_measures_only_what_could_enter_the_top_k(isolated) -> None:
    fitted = isolated / "fitted"
    assert main(["latency", "fit", "--lut", str(fitted), *FIT]) == 0
    config = write_config(isolated, "screen", latency={"source": "screen", "lut": str(fitted), "screen_top_k": 1},
                          budget={"trials": 5})
    result = run_nas("search", "-c", str(config), "--runs-dir", str(isolated / "runs"), cwd=isolated)
    assert result.returncode == 0, result.stderr[-3000:]
    done = sorted(complete(stored_trials(isolated / "runs" / "screen", "screen")), key=lambda t: t.number)
    assert len(done) == 5
    first = done[0].user_attrs
    assert first["screen"] == "measured" and "screen_threshold" not in first  # nothing to beat yet
    for trial in done:
        attrs = trial.user_attrs
        assert attrs["lut_model"] == "nnls" and attrs["lut_ms"] > 0
        assert attrs["reward"] == pytest.approx(attrs["accuracy"] * (attrs["latency_ms"] / 5.0) ** -0.07)
        if attrs["screen"] == "predicted":
            assert attrs["latency_source"] == "lut" and attrs["latency_ms"] == attrs["lut_ms"]
            assert attrs["screen_bound"] < attrs["screen_threshold"]
            assert "latency_stamp" not in attrs
        else:
            assert attrs["screen"] == "measured" and attrs["latency_source"] == "measured"
            assert attrs["latency_stamp"]["resolution"] == 16 and attrs["latency_ci_high_ms"] > 0
            if "screen_threshold" in attrs:
                assert attrs["screen_bound"] >= attrs["screen_threshold"]


def test_screen_without_a_fitted_predictor_is_refused_before_anything_runs(isolated) -> None:
    config = write_config(isolated, "unfitted", latency={"source": "screen", "lut": str(isolated / "nothing")})
    result = run_nas("search", "-c", str(config), "--runs-dir", str(isolated / "runs"), cwd=isolated)
    assert result.returncode == 2 and "needs a fitted predictor" in result.stderr
    assert "nas latency fit" in result.stderr and not (isolated / "runs" / "unfitted").exists()
