"""NetAdapt's schedule, selection, proposals, history and settings (no training, no measuring)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from latency.errors import StampMismatchError
from latency.stamp import DeviceStamp
from nas.campaign.plots import draw_trajectory
from nas.cli.plot import axis_stamp
from nas.spec.errors import ConfigError
from nas.spec.profile import profile
from netadapt.algorithm import Candidate, Schedule, select, slope_score
from netadapt.config import PYNATIVE_MAX_STEPS, NetAdaptConfig, load_config
from netadapt.estimates import AnchoredEstimate
from netadapt.history import COLUMNS, History, Trajectory, load_trajectory, read_history, trajectory
from netadapt.proposals import Target, TargetOptions, propose, smaller_widths, targets, valid_widths, width_of
from netadapt.run import NetAdaptResult
from search_spaces import references


class MaddsPredictor:
    """Multiply-adds as the resource (the NetAdapt paper's other resource): a real, exact count."""

    def predict(self, spec) -> float:
        return profile(spec, 32).madds / 1e6


def test_schedules_follow_the_authors_defaults() -> None:
    decay = Schedule()
    assert decay.reduction(1, 100.0) == pytest.approx(2.5)
    assert decay.reduction(3, 100.0) == pytest.approx(2.5 * 0.96 ** 2)
    assert Schedule("fixed").reduction(7, 40.0) == pytest.approx(0.4)  # MobileNetV3: 0.01 * L
    assert decay.constraint(1, 100.0, 60.0, 50.0) == pytest.approx(57.5)
    assert decay.constraint(1, 100.0, 51.0, 50.0) == 50.0  # the last step stops at the budget
    with pytest.raises(ValueError, match="netadapt.schedule"):
        Schedule("linear")


def test_selection_rules() -> None:
    # Current network: 90% at 10 ms.
    candidates = [Candidate("a", 0.89, 9.5), Candidate("b", 0.87, 8.0), Candidate("c", math.nan, 5.0)]
    # slope: a loses 1 point for 0.5 ms (0.02 per ms), b 3 points for 2 ms (0.015 per ms).
    assert slope_score(0.90, 10.0, candidates[0]) == pytest.approx((0.01 + 1e-6) / (0.5 + 1e-5))
    assert select(candidates, 0.90, 10.0, "slope") == 1
    assert select(candidates, 0.90, 10.0, "accuracy") == 0
    with pytest.raises(ValueError, match="no proposal"):
        select([candidates[2]], 0.9, 10.0)


def test_targets_and_widths_of_mnasnet() -> None:
    spec = references.get("mnasnet_a1").replace(resolution=32)
    keys = [t.key for t in targets(spec)]
    assert "group:stem" in keys and "head" in keys and "hidden" not in keys  # MnasNet has no hidden layer
    assert "expand:b0.l0" not in keys  # block 0 (e1) has no expansion conv
    assert smaller_widths(24, 8) == [16, 8] and smaller_widths(17, 8) == [16, 8] and smaller_widths(8, 8) == []
    group = next(t for t in targets(spec) if t.key == "group:b2")  # the 40-wide blocks' group
    assert [w for w, _ in valid_widths(spec, group, 8)] == [32, 24, 16, 8]


def test_proposal_is_the_largest_width_meeting_the_constraint() -> None:
    spec = references.get("mobilenet_v3_small").replace(resolution=32)
    estimate = AnchoredEstimate(MaddsPredictor(), spec, measured_ms=profile(spec, 32).madds / 1e6)
    target = Target("expand", block=4, layer=1)  # 576 wide
    constraint = estimate.measured_ms * 0.98
    proposal, _ = propose(spec, target, constraint, estimate, 8)
    assert proposal is not None and proposal.estimated_ms <= constraint
    above = next(candidate for width, candidate in valid_widths(spec, target, 8) if width == proposal.width + 8)
    assert estimate(above)[1] > constraint
    assert width_of(proposal.spec, target) == proposal.width and proposal.width % 8 == 0
    nothing, lowest = propose(spec, target, 0.0, estimate, 8)
    assert nothing is None and lowest is not None and lowest < estimate.measured_ms


def test_history_round_trips_through_csv_and_parquet(tmp_path) -> None:
    history = History(tmp_path)
    history.add([{"iteration": 0, "target": "seed", "chosen": True, "measured_ms": 10.0, "top1": 0.9}])
    history.add([{"iteration": 1, "target": "head", "width_before": 64, "width": 56, "top1": 0.88, "chosen": True,
                  "measured_ms": 9.0, "estimated_ms": 9.1, "predicted_ms": 8.0},
                 {"iteration": 1, "target": "group:b1", "width_before": 24, "width": 16, "top1": 0.85,
                  "estimated_ms": 8.5, "predicted_ms": 7.5}])
    history.save()
    for path in (tmp_path / "history.csv", tmp_path / "history.parquet", tmp_path):
        frame = read_history(path)
        assert list(frame.columns) == list(COLUMNS) and len(frame) == 3
        assert frame["chosen"].tolist() == [True, True, False]
    assert trajectory(read_history(tmp_path))["target"].tolist() == ["seed", "head"]
    again = History(tmp_path)
    again.truncate(0)
    assert len(again.rows) == 1
    with pytest.raises(KeyError, match="unknown history column"):
        again.add([{"iteration": 2, "accuracy": 1.0}])


def test_a_history_written_before_the_later_columns_reads_with_them_empty(tmp_path) -> None:
    history = History(tmp_path)
    history.add([{"iteration": 0, "target": "seed", "chosen": True, "measured_ms": 10.0, "top1": 0.9},
                 {"iteration": 1, "target": "head", "top1": 0.8, "finetune_s": 3.0, "peak_rss_mb": 900.0}])
    history.save()
    older = read_history(tmp_path / "history.csv").drop(columns=["setup_s", "compile_s", "steps_s", "eval_s",
                                                                 "peak_rss_mb"])
    older.to_csv(tmp_path / "history.csv", index=False)
    frame = read_history(tmp_path / "history.csv")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["peak_rss_mb"].isna().all() and frame["finetune_s"].tolist()[1] == 3.0
    assert read_history(tmp_path / "history.parquet")["peak_rss_mb"].tolist()[1] == 900.0


def test_settings_are_checked_by_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="exactly one of budget_ms and budget_ratio"):
        NetAdaptConfig()
    with pytest.raises(ValueError, match="exactly one"):
        NetAdaptConfig(budget_ms=5.0, budget_ratio=0.5)
    with pytest.raises(ValueError, match="netadapt.budget_ratio"):
        NetAdaptConfig(budget_ratio=1.5)
    with pytest.raises(ValueError, match="netadapt.targets"):
        NetAdaptConfig(budget_ratio=0.5, targets=("expand", "neck"))
    with pytest.raises(ValueError, match="netadapt.selection"):
        NetAdaptConfig(budget_ratio=0.5, selection="best")
    with pytest.raises(ValueError, match="netadapt.finetune_mode"):
        NetAdaptConfig(budget_ratio=0.5, finetune_mode="jit")
    path = tmp_path / "netadapt.yaml"
    path.write_text("budget_ratio: 0.5\nshort_term_stepz: 10\n")
    with pytest.raises(ConfigError, match="short_term_stepz: unknown key"):
        load_config(path)
    path.write_text("budget_ratio: 0.5\nschedule: fixed\ntargets: [group, head]\n")
    config = load_config(path, max_iters=3)
    assert config.schedule == "fixed" and config.targets == ("group", "head") and config.max_iters == 3
    assert config.target_options() == TargetOptions(expand=False, groups=True, stem=False, head=True)
    assert config.differences(config.replace(max_iters=9, workers=1)) == []
    assert config.differences(config.replace(step_multiple=4)) == ["step_multiple"]


def test_trajectory_is_drawn_on_given_axes(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = History(tmp_path)
    history.add([{"iteration": i, "target": "seed" if i == 0 else "head", "chosen": True, "status": "ok",
                  "measured_ms": 10.0 - i, "top1": 0.9 - 0.01 * i} for i in range(4)])
    history.add([{"iteration": 1, "target": "hidden", "status": "ok", "estimated_ms": 8.7, "top1": 0.8}])
    history.save()
    figure, ax = plt.subplots()
    line = draw_trajectory(ax, load_trajectory(tmp_path, name="run"))
    assert np.allclose(line.get_xdata(), [10, 9, 8, 7]) and ax.get_xlabel() == "latency (ms, measured)"
    plt.close(figure)


def test_short_fine_tunes_run_op_by_op_and_long_ones_compiled() -> None:
    few = NetAdaptConfig(budget_ratio=0.5, short_term_steps=PYNATIVE_MAX_STEPS)
    many = few.replace(short_term_steps=PYNATIVE_MAX_STEPS + 1)
    assert (few.proposal_mode(), many.proposal_mode()) == ("pynative", "graph")
    assert many.replace(finetune_mode="pynative").proposal_mode() == "pynative"
    assert few.replace(finetune_mode="graph").proposal_mode() == "graph"
    assert few.differences(few.replace(finetune_mode="graph")) == []  # a resume may change it


def test_the_shipped_demo_settings_load() -> None:
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "experiments" / "netadapt" / "demo.yaml")
    assert config.budget_ratio == 0.6 and config.selection == "slope"


def test_a_result_not_faster_than_the_seed_by_its_interval_is_a_failure(tmp_path) -> None:
    def result(final_ms: float, final_upper_ms: float) -> NetAdaptResult:
        return NetAdaptResult(tmp_path, "max_iters", 3, budget_ms=8.0, initial_ms=10.0, final_measured_ms=final_ms,
                              final_predicted_ms=final_ms, initial_top1=0.9, final_top1=0.8,
                              spec_path=tmp_path / "spec.yaml", ckpt_path=tmp_path / "model.ckpt",
                              last_iteration_ms=final_upper_ms, speedup=10.0 / final_ms, final_upper_ms=final_upper_ms)

    assert result(8.0, 9.0).faster and result(8.0, 9.0).failure() is None
    for slower in (result(9.5, 10.5), result(10.2, 10.9)):  # inside the seed's figure by its interval, or above
        assert not slower.faster
        message = slower.failure()
        assert message is not None and "not faster than the seed" in message and "10.000 ms" in message
    # A result without an interval (a state written before it was kept) falls back to the estimate.
    assert result(9.0, math.nan).faster and not result(10.5, math.nan).faster


def test_the_legend_names_the_final_fine_tune_only_when_there_was_one(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = Trajectory(name="run", source="x", iterations=(0, 1), latency_ms=(10.0, 9.0), accuracy=(0.9, 0.88),
                      final_latency_ms=9.0, final_accuracy=0.89)
    for epochs, label in ((0, "run final, no long-term fine-tune"),
                          (3, "run final, after a 3-epoch long-term fine-tune")):
        figure, ax = plt.subplots()
        draw_trajectory(ax, dataclasses.replace(base, final_epochs=epochs))
        assert label in ax.get_legend_handles_labels()[1]
        plt.close(figure)


def test_a_plot_refuses_latencies_of_two_stamps() -> None:
    one = DeviceStamp(device="CPU", device_model="", cpu_model="cpu", cores=2, threads=1, mindspore_version="2",
                      batch=1, resolution=224, runtime="onnxruntime")
    two = dataclasses.replace(one, threads=2)
    assert axis_stamp({}) == "" and axis_stamp({"campaign 'a'": [one, one], "NetAdapt run 'b'": [one]}) == one.brief()
    assert "1 thread," in one.brief() and "224 px" in one.brief()
    with pytest.raises(StampMismatchError) as error:
        axis_stamp({"campaign 'a'": [one], "NetAdapt run 'b'": [two]})
    assert "campaign 'a'" in str(error.value) and "NetAdapt run 'b'" in str(error.value)
    assert one.brief() in str(error.value) and two.brief() in str(error.value)


def test_one_grid_step_default_for_both_table_builders() -> None:
    """`nas netadapt --lut-grid-step` and `nas latency build-lut --grid-step` default alike."""
    from nas.cli.main import build_parser

    build = build_parser(["latency"]).parse_args(["latency", "build-lut", "--refs", "--out", "luts"])
    assert NetAdaptConfig(budget_ratio=0.5).lut_grid_step == build.grid_step > 1
