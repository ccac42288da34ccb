"""Look-up tables built from real measurements: incremental, resumable, interpolating."""
from __future__ import annotations

import json

import pytest

from latency import LUTMissError, StampMismatchError, UnbuildableSpecError
from latency.lut import LatencyLUT, build_lut
from latency.mindspore_backend import MindSporeBackend
from latency.pieces import Piece, unique_pieces
from tests.support.latency import FAST, tiny_spec


@pytest.fixture(autouse=True)
def private_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))


def test_a_table_is_built_once_resumed_and_interpolates_pruned_widths(tmp_path) -> None:
    backend = MindSporeBackend(resolution=16, **FAST)
    lut = LatencyLUT(tmp_path / "lut", backend.stamp())
    measured_specs = [tiny_spec(mid=16), tiny_spec(mid=96)]
    pieces = unique_pieces(measured_specs, 16)
    progress = []
    report = build_lut(lut, backend, pieces, progress=lambda done, total, piece: progress.append((done, total)))
    assert report.measured == len(pieces) + 1 == len(lut)  # + the launch overhead
    assert progress[-1] == (report.measured, report.measured)
    assert backend.launches == 1

    again = build_lut(LatencyLUT(tmp_path / "lut"), backend, pieces)
    assert again.measured == 0 and again.present == len(pieces) + 1
    assert backend.launches == 1  # nothing to measure, no worker

    reopened = LatencyLUT(tmp_path / "lut")
    layers = {spec_mid: [row for row in reopened.breakdown(tiny_spec(mid=spec_mid)) if row[0].kind == "layer"][0]
              for spec_mid in (16, 56, 96)}
    assert layers[16][2] == layers[96][2] == "measured"
    assert layers[56][2] == "interpolated"
    low, high = sorted((layers[16][1], layers[96][1]))
    assert low <= layers[56][1] <= high
    assert reopened.predict(tiny_spec(mid=56)) > 0
    with pytest.raises(LUTMissError, match="blocks.0.0"):
        reopened.predict(tiny_spec(mid=128))


def test_an_interrupted_build_keeps_what_it_measured(tmp_path) -> None:
    backend = MindSporeBackend(resolution=16, **FAST)
    lut = LatencyLUT(tmp_path / "lut", backend.stamp())
    pieces = unique_pieces([tiny_spec(mid=24)], 16)
    config = json.loads(pieces[1].config)
    config["plan"]["mid_channels"] = 0
    broken = Piece(kind="layer", key="broken", base="broken", coords=(8, 0, 8), se=0,
                   input_shape=pieces[1].input_shape, config=json.dumps(config), name="broken-layer")
    with pytest.raises(UnbuildableSpecError, match="broken-layer"):
        build_lut(lut, backend, [pieces[0], pieces[1], broken, pieces[2]])
    kept = LatencyLUT(tmp_path / "lut")
    assert {pieces[0].key, pieces[1].key} <= set(kept.keys())  # measured before the failure: on disk
    assert pieces[2].key not in kept
    finished = build_lut(kept, backend, pieces)
    assert finished.measured == 1 and pieces[2].key in kept  # the re-run measures only the rest


def test_a_backend_of_another_stamp_cannot_extend_a_table(tmp_path) -> None:
    lut = LatencyLUT(tmp_path / "lut", MindSporeBackend(resolution=16, threads=1).stamp())
    with pytest.raises(StampMismatchError, match="t2|t1"):
        build_lut(lut, MindSporeBackend(resolution=16, threads=2, **FAST), unique_pieces([tiny_spec()], 16))
    assert len(lut) == 0
