"""Latency benchmark: repeatability, look-up-table accuracy, costs, and the references against
the papers' Pixel-1 figures.

    python -m bench.latency [--resolution 224] [--samples 50] [--calibration-samples 10]
                            [--processes 5] [--space auto] [--threads N] [--interpolation N]

- Repeatability: MobileNetV3-Large measured in ``--processes`` separate worker processes; the
  coefficient of variation of their medians (target <= 3%).
- LUT accuracy: a table built from the layers of ``--samples`` random architectures plus
  ``--calibration-samples`` others; each measured end to end. Before calibration: summed pieces
  against measured. After: the linear calibration fitted on the calibration architectures only,
  evaluated on the others (target >= 90% within +-10%, Spearman >= 0.9; nn-Meter: 99%).
- Costs: seconds per end-to-end measurement, table build time, prediction time (target < 1 ms).
- References: mobilenet_v3_small, mobilenet_v3_large, mnasnet_a1 and mobilenet_v2 next to the
  papers' Pixel-1 latencies (15.8, 51, 78, 75 ms) and the rank agreement.
- Optional (``--interpolation N``): N pruned MobileNetV3-Large layers, interpolated from a coarse
  NetAdapt channel grid, against their own measurement.

Measurements hold the device lock exclusively (``$NAS_LOCK_DIR``), so run it on a quiet machine.
The default settings take about 15-25 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import summary, write_report
from latency.lut import LatencyLUT, accuracy, additivity_check, build_lut, fit_calibration
from latency.mindspore_backend import MindSporeBackend
from latency.pieces import unique_pieces
from latency.sampling import space_specs
from netadapt.grid import grid_specs
from search_spaces import references

PIXEL1_MS = {"mobilenet_v3_small": 15.8, "mobilenet_v3_large": 51.0, "mnasnet_a1": 78.0, "mobilenet_v2": 75.0}


def _counter(label: str):
    def show(done: int, total: int, what=None) -> None:
        if done == total or done % 10 == 0 or done == 1:
            print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)
    return show


def repeatability(backend, processes: int) -> dict:
    spec = references.get("mobilenet_v3_large")
    medians, seconds = [], []
    for index in range(processes):
        started = time.perf_counter()
        result = backend.measure(spec)  # each call is a fresh worker process
        seconds.append(time.perf_counter() - started)
        medians.append(result.median_ms)
        print(f"  process {index + 1}: median {result.median_ms:.3f} ms ({result.repeats} runs, cv {result.cv:.1%})")
    cv = statistics.pstdev(medians) / statistics.fmean(medians)
    print(f"repeatability of mobilenet_v3_large over {processes} processes: medians {statistics.fmean(medians):.3f} ms "
          f"mean, cv {cv:.2%} (target <= 3%)")
    return {"medians_ms": medians, "cv_of_medians": cv, "seconds_per_measurement": summary(seconds)}


def references_vs_pixel1(backend) -> dict:
    from scipy.stats import kendalltau, spearmanr

    names = list(PIXEL1_MS)
    results = backend.measure_many([references.get(name) for name in names])
    measured = [result.median_ms for result in results]
    paper = [PIXEL1_MS[name] for name in names]
    pairs = list(itertools.combinations(range(len(names)), 2))
    agree = sum((measured[i] - measured[j]) * (paper[i] - paper[j]) > 0 for i, j in pairs)
    rho, tau = float(spearmanr(measured, paper)[0]), float(kendalltau(measured, paper)[0])
    print(f"{'reference':<20} {'measured ms':>12} {'Pixel-1 ms':>11} {'ratio':>7}")
    for name, ours, theirs in zip(names, measured, paper):
        print(f"{name:<20} {ours:>12.3f} {theirs:>11.1f} {ours / theirs:>7.3f}")
    print(f"rank agreement with Pixel-1: Spearman {rho:.3f}, Kendall {tau:.3f}, {agree}/{len(pairs)} pairs in order")
    return {"measured_ms": dict(zip(names, measured)), "pixel1_ms": PIXEL1_MS, "spearman": rho, "kendall": tau,
            "pairs_in_order": agree, "pairs": len(pairs)}


def lut_accuracy(backend, args: argparse.Namespace, directory: Path) -> dict:
    total = args.samples + args.calibration_samples
    specs, note = space_specs("mnasnet" if args.space == "auto" else args.space, total, seed=args.seed)
    print(f"architectures: {note}")
    evaluation, calibration = specs[:args.samples], specs[args.samples:]
    lut = LatencyLUT(directory, backend.stamp(resolution=args.resolution), source={"kind": "bench", "note": note})
    pieces = unique_pieces(specs, args.resolution)
    report = build_lut(lut, backend, pieces, progress=_counter("LUT pieces"))
    print(f"LUT: {report.describe()} ({report.seconds / max(1, report.measured):.2f} s per piece)")

    started = time.perf_counter()
    measured_all = []
    for done, (_, result) in enumerate(backend.measure_iter(specs), 1):
        measured_all.append(result.median_ms)
        _counter("end-to-end")(done, len(specs))
    e2e_seconds = (time.perf_counter() - started) / len(specs)
    measured_eval, measured_cal = measured_all[:args.samples], measured_all[args.samples:]

    summed_eval = [lut.predict_summed(spec) for spec in evaluation]
    before = accuracy(summed_eval, measured_eval)
    held_out = None
    if len(calibration) >= 2:
        line = fit_calibration([lut.predict_summed(spec) for spec in calibration], measured_cal)
        held_out = {"calibration": line.to_dict(),
                    "accuracy": accuracy([line.apply(value) for value in summed_eval], measured_eval).to_dict()}
    in_sample = additivity_check(lut, evaluation, measured_eval)  # also saves this fit in the table

    started = time.perf_counter()
    for spec in evaluation:  # first look-ups (interpolation memo cold for new pieces)
        lut.predict(spec)
    first_ms = (time.perf_counter() - started) / len(evaluation) * 1e3
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        for spec in evaluation:
            lut.predict(spec)
    predict_ms = (time.perf_counter() - started) / (rounds * len(evaluation)) * 1e3

    print(f"before calibration (summed pieces): {before.describe()}")
    if held_out is not None:
        line = held_out["calibration"]
        after = held_out["accuracy"]
        print(f"after calibration fitted on {len(calibration)} other architectures ({line['a']:.3f} * sum + "
              f"{line['b']:.3f} ms): {after['within_10pct']:.0%} within +-10%, Spearman {after['spearman']:.3f}, "
              f"mean |error| {after['mean_abs_pct_error']:.1%} (target >= 90%, >= 0.9; nn-Meter 99%)")
    in_after = in_sample.after.to_dict() if in_sample.after is not None else {}
    print(f"in-sample calibration on the {len(evaluation)} themselves: {in_after.get('within_10pct', 0):.0%} "
          f"within +-10%, Spearman {in_after.get('spearman', 0):.3f}")
    print(f"costs: {e2e_seconds:.2f} s per end-to-end measurement (new worker, compile, timing); LUT build "
          f"{report.seconds:.1f} s for {report.measured} pieces; prediction {predict_ms:.3f} ms per architecture "
          f"(first {first_ms:.3f} ms; target < 1 ms)")
    return {"source": note, "architectures": len(evaluation), "calibration_architectures": len(calibration),
            "lut_pieces": report.measured, "lut_build_s": report.seconds,
            "lut_s_per_piece": report.seconds / max(1, report.measured),
            "before": before.to_dict(), "after_held_out": held_out, "after_in_sample": in_after,
            "calibration_in_sample": in_sample.calibration.to_dict() if in_sample.calibration else None,
            "seconds_per_end_to_end": e2e_seconds,
            "predict_ms": predict_ms, "predict_first_ms": first_ms,
            "rows": [{"name": spec.name, "arch_id": spec.arch_id, "measured_ms": m, "summed_ms": s}
                     for spec, m, s in zip(evaluation, measured_eval, summed_eval)]}


def interpolation(backend, args: argparse.Namespace, directory: Path) -> dict:
    """How well interpolated widths match measured ones: a table on NetAdapt's coarse channel grid
    of MobileNetV3-Large (every ``--grid-step``-th multiple of 8), checked on held-out fine-grid
    layers that are measured directly."""
    spec = references.get("mobilenet_v3_large")
    lut = LatencyLUT(directory, backend.stamp(resolution=args.resolution), source={"kind": "bench-grid"})
    coarse = unique_pieces([spec, *grid_specs(spec, 8, grid_step=args.grid_step)], args.resolution)
    report = build_lut(lut, backend, coarse, progress=_counter("coarse grid pieces"))
    fine = [piece for piece in unique_pieces(grid_specs(spec, 8), args.resolution)
            if piece.key not in lut]
    rng = random.Random(args.seed)
    held_out = rng.sample(fine, min(args.interpolation, len(fine)))
    predicted, measured, rows = [], [], []
    for piece, result in backend.measure_pieces(held_out, args.resolution):
        estimate, how = lut.piece_ms(piece)
        predicted.append(estimate)
        measured.append(result.median_ms)
        rows.append({"key": piece.key, "how": how, "interpolated_ms": estimate, "measured_ms": result.median_ms})
    errors = [abs(p - m) / m for p, m in zip(predicted, measured)]
    within = sum(error <= 0.10 for error in errors) / len(errors)
    print(f"interpolation: coarse grid of {report.measured} pieces; {len(errors)} held-out pruned layers: "
          f"{within:.0%} within +-10% of their own measurement, mean |error| {statistics.fmean(errors):.1%}")
    return {"coarse_pieces": report.measured, "held_out": len(errors), "within_10pct": within,
            "mean_abs_pct_error": statistics.fmean(errors), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--samples", type=int, default=50, help="random architectures evaluated")
    parser.add_argument("--calibration-samples", type=int, default=10, help="other architectures to calibrate on")
    parser.add_argument("--processes", type=int, default=5, help="separate processes for repeatability")
    parser.add_argument("--space", default="auto", help="'auto' (mnasnet if registered, else reference variants), "
                                                        "a space name, or 'refs'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores available)")
    parser.add_argument("--max-repeats", type=int, default=50, help="most timed runs per measurement (default 50)")
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--lut-dir", default=None, help="keep the table here (default: a temporary directory)")
    parser.add_argument("--interpolation", type=int, default=0, metavar="N",
                        help="also check N interpolated NetAdapt widths against their measurement (default 0)")
    parser.add_argument("--grid-step", type=int, default=4, help="coarse grid for --interpolation (default 4)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["repeatability", "references", "lut"])
    args = parser.parse_args()

    backend = MindSporeBackend("CPU", resolution=args.resolution, threads=args.threads, max_repeats=args.max_repeats,
                               tolerance=args.tolerance)
    stamp = backend.stamp()
    print(f"device: {stamp.describe()}")
    figures: dict = {"args": vars(args), "stamp": stamp.to_dict()}
    started = time.perf_counter()
    if "repeatability" not in args.skip:
        figures["repeatability"] = repeatability(backend, args.processes)
    if "references" not in args.skip:
        figures["references"] = references_vs_pixel1(backend)
    if "lut" not in args.skip:
        if args.lut_dir:
            figures["lut"] = lut_accuracy(backend, args, Path(args.lut_dir))
        else:
            with tempfile.TemporaryDirectory(prefix="bench-lut-") as folder:
                figures["lut"] = lut_accuracy(backend, args, Path(folder) / "lut")
    if args.interpolation > 0:
        with tempfile.TemporaryDirectory(prefix="bench-grid-") as folder:
            figures["interpolation"] = interpolation(backend, args, Path(folder) / "lut")
    figures["total_s"] = time.perf_counter() - started
    print(f"total {figures['total_s']:.0f} s, {backend.launches} worker processes")
    write_report("latency", figures)


if __name__ == "__main__":
    main()
