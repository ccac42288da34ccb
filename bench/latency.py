"""Latency benchmark: the device server and the paired protocol against the old design, the two
runtimes side by side, the references with their intervals, and look-up-table accuracy.

    python -m bench.latency                      # repeatability, cost, runtimes, references
    python -m bench.latency --only lut           # the look-up-table accuracy of the predictor issue
    python -m bench.latency --campaign           # also the demo campaign, twice, cache off

- Repeatability: MobileNetV3-Large in ``--processes`` separate processes (each its own server),
  for each runtime and protocol: the CV of the estimates (target <= 3% for the default), with the
  CV of the raw medians and of the median ratios beside it.
- Cost: seconds per measurement of ``--cost-samples`` MnasNet-space networks through one server,
  against a fresh process per measurement (the old design), in the same run (target <= 1/3).
- Runtimes: ONNX Runtime against MindSpore's CPU runtime on the four references (latency
  ratios), and the Spearman rank agreement of the two over ``--rank-samples`` MnasNet networks.
- References: mobilenet_v3_small/_large, mobilenet_v2, mnasnet_a1 with their intervals, next to
  the papers' Pixel-1 latencies (15.8, 51, 75, 78 ms) and the rank agreement.
- Campaign (``--campaign``): the demo campaign twice into two run directories, cache off; every
  trial's interval half-width and the agreement of architectures measured in both.

Measurements hold the device lock exclusively (``$NAS_LOCK_DIR``), so run it on a quiet machine.
Absolute times differ between machines and days; compare the ratios printed in one run.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from bench.common import summary, write_report
from latency.config import LatencyConfig, make_backend
from latency.lut import LatencyLUT, accuracy, additivity_check, build_lut, fit_calibration
from latency.pieces import unique_pieces
from latency.result import LatencyResult
from latency.sampling import space_specs
from nas.campaign.config import default_storage
from netadapt.grid import grid_specs
from search_spaces import references

ROOT = Path(__file__).resolve().parents[1]

PIXEL1_MS = {"mobilenet_v3_small": 15.8, "mobilenet_v3_large": 51.0, "mnasnet_a1": 78.0, "mobilenet_v2": 75.0}


def _counter(label: str):
    def show(done: int, total: int, what=None) -> None:
        if done == total or done % 10 == 0 or done == 1:
            print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)
    return show


_ONE_PROCESS = """
import json, sys
from latency.config import LatencyConfig, make_backend
from search_spaces import references
settings = json.loads(sys.argv[1])
backend = make_backend(LatencyConfig(cache=False, **settings))
backend.server.private = True  # a server of its own, stopped after
spec = references.get("mobilenet_v3_large")
print(json.dumps(backend.measure(spec).to_dict(samples=False)))
"""


def _cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.fmean(values) if values else float("nan")


def repeatability(args: argparse.Namespace, runtime: str, protocol: str) -> dict:
    """MobileNetV3-Large in separate processes, each with its own device server."""
    settings = {"runtime": runtime, "protocol": protocol, "threads": args.threads, "resolution": args.resolution,
                "max_seconds": args.max_seconds}
    results, seconds = [], []
    for index in range(args.processes):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _ONE_PROCESS, json.dumps(settings)], capture_output=True,
                              text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"repeatability process failed: {done.stderr[-2000:]}")
        seconds.append(time.perf_counter() - started)
        result = LatencyResult.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))
        results.append(result)
        print(f"  {runtime}/{protocol} process {index + 1}: {result.describe()}", flush=True)
    estimates = [r.estimate_ms for r in results]
    raw = [r.median_ms for r in results]
    figures = {"runtime": runtime, "protocol": protocol, "estimates_ms": estimates, "cv_estimates": _cv(estimates),
               "cv_raw_medians": _cv(raw), "precise": [r.precise for r in results],
               "half_widths": [r.half_width for r in results], "seconds_per_process": summary(seconds)}
    if protocol == "paired":
        ratios = [r.estimate_ms / r.anchor_ms for r in results]
        figures["cv_ratios"] = _cv(ratios)
    print(f"repeatability {runtime}/{protocol}: estimates {statistics.fmean(estimates):.3f} ms mean, CV "
          f"{figures['cv_estimates']:.2%} (raw medians {figures['cv_raw_medians']:.2%}"
          + (f", ratios to the anchor {figures['cv_ratios']:.2%}" if "cv_ratios" in figures else "") + ")", flush=True)
    return figures


def cost(args: argparse.Namespace) -> dict:
    """Seconds per measurement through one server against a fresh process per measurement (the old
    design), for each runtime: the same networks, the same protocol, in the same run."""
    specs, note = space_specs("mnasnet", args.cost_samples, seed=args.seed)
    figures: dict = {"architectures": note}
    for runtime in ("onnxruntime", "mindspore"):
        per_runtime: dict = {}
        for label, server in (("server", True), ("fresh process", False)):
            backend = make_backend(LatencyConfig(cache=False, threads=args.threads, resolution=args.resolution,
                                                 runtime=runtime, max_seconds=args.max_seconds))
            backend.server.private = not server
            started = time.perf_counter()
            for spec in specs:
                backend.measure(spec)
            per = (time.perf_counter() - started) / len(specs)
            backend.server.stop()
            per_runtime[label] = per
            print(f"cost, {runtime}, {label}: {per:.2f} s per measurement ({backend.launches} server starts)",
                  flush=True)
        per_runtime["ratio"] = per_runtime["server"] / per_runtime["fresh process"]
        print(f"cost ratio, {runtime}, server / fresh process: {per_runtime['ratio']:.2f} (target <= 0.33)",
              flush=True)
        figures[runtime] = per_runtime
    return figures


def runtimes(args: argparse.Namespace) -> dict:
    """ONNX Runtime against MindSpore's CPU runtime: reference ratios and rank agreement."""
    from scipy.stats import spearmanr  # heavy: only this section needs it

    backends = {runtime: make_backend(LatencyConfig(cache=False, threads=args.threads, resolution=args.resolution,
                                                    runtime=runtime, max_seconds=args.max_seconds))
                for runtime in ("onnxruntime", "mindspore")}
    names = list(PIXEL1_MS)
    refs = {runtime: [r.estimate_ms for r in backend.measure_many([references.get(n) for n in names])]
            for runtime, backend in backends.items()}
    print(f"{'reference':<20} {'onnxruntime ms':>15} {'mindspore ms':>13} {'ratio':>7}")
    for index, name in enumerate(names):
        ours, theirs = refs["onnxruntime"][index], refs["mindspore"][index]
        print(f"{name:<20} {ours:>15.3f} {theirs:>13.3f} {ours / theirs:>7.3f}")
    specs, note = space_specs("mnasnet", args.rank_samples, seed=args.seed + 1)
    ranked = {runtime: [r.estimate_ms for r in backend.measure_many(specs)] for runtime, backend in backends.items()}
    rho = float(spearmanr(ranked["onnxruntime"], ranked["mindspore"])[0])
    print(f"rank agreement over {len(specs)} MnasNet-space networks ({note}): Spearman {rho:.3f}", flush=True)
    for backend in backends.values():
        backend.server.stop()
    return {"references_ms": refs, "ratios": {n: refs["onnxruntime"][i] / refs["mindspore"][i]
                                              for i, n in enumerate(names)},
            "rank_samples_ms": ranked, "spearman": rho}


def references_vs_pixel1(args: argparse.Namespace) -> dict:
    from scipy.stats import kendalltau, spearmanr  # heavy: only this section needs it

    backend = make_backend(LatencyConfig(cache=False, threads=args.threads, resolution=args.resolution,
                                         max_seconds=args.max_seconds))
    names = list(PIXEL1_MS)
    results = backend.measure_many([references.get(name) for name in names])
    measured = [result.estimate_ms for result in results]
    paper = [PIXEL1_MS[name] for name in names]
    pairs = list(itertools.combinations(range(len(names)), 2))
    agree = sum((measured[i] - measured[j]) * (paper[i] - paper[j]) > 0 for i, j in pairs)
    rho, tau = float(spearmanr(measured, paper)[0]), float(kendalltau(measured, paper)[0])
    print(f"{'reference':<20} {'estimate ms':>12} {'95% CI':>19} {'Pixel-1 ms':>11}")
    for name, result, theirs in zip(names, results, paper):
        print(f"{name:<20} {result.estimate_ms:>12.3f} {result.ci_low_ms:>9.3f}-{result.ci_high_ms:<9.3f} "
              f"{theirs:>11.1f}{'' if result.precise else '  (imprecise)'}")
    print(f"rank agreement with Pixel-1: Spearman {rho:.3f}, Kendall {tau:.3f}, {agree}/{len(pairs)} pairs in order")
    backend.server.stop()
    return {"measured_ms": dict(zip(names, measured)),
            "intervals_ms": {n: [r.ci_low_ms, r.ci_high_ms] for n, r in zip(names, results)},
            "pixel1_ms": PIXEL1_MS, "spearman": rho, "kendall": tau, "pairs_in_order": agree, "pairs": len(pairs)}


def campaign(args: argparse.Namespace, work: Path) -> dict:
    """The demo campaign twice, cache off: stored intervals, and agreement across the two runs."""
    import optuna  # heavy: only this section reads studies

    config = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    config["latency"]["cache"] = False
    config["budget"]["trials"] = args.campaign_trials
    config["baselines"] = "none"  # the figures are about the search's own trials
    # One PPO batch as long as the campaign: no policy update, so both campaigns ask the same
    # architectures (the same seed) and every one is measured twice, in two campaigns.
    config["controller"]["options"]["batch_size"] = args.campaign_trials
    stored: list[dict[str, dict]] = []
    work.mkdir(parents=True, exist_ok=True)
    for run in ("a", "b"):
        path = work / f"demo_{run}.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nas.cli", "search", "-c", str(path), "--runs-dir", str(work)],
                              capture_output=True, text=True, timeout=7200)
        if done.returncode != 0:
            raise SystemExit(f"campaign {run} failed: {done.stderr[-2000:]}")
        study = optuna.load_study(study_name="demo", storage=default_storage(work / "demo"))
        trials = {t.user_attrs["arch_id"]: t.user_attrs for t in study.trials if t.state.name == "COMPLETE"}
        stored.append(trials)
        (work / "demo").rename(work / f"demo_{run}")
        print(f"campaign {run}: {len(trials)} trials in {time.perf_counter() - started:.0f} s", flush=True)
    widths = [max(a["latency_ci_high_ms"] - a["latency_ms"], a["latency_ms"] - a["latency_ci_low_ms"]) / a["latency_ms"]
              for trials in stored for a in trials.values()]
    common = sorted(set(stored[0]) & set(stored[1]))
    gaps = [abs(stored[0][k]["latency_ms"] / stored[1][k]["latency_ms"] - 1) for k in common]
    print(f"campaign intervals: half-width median {statistics.median(widths):.1%}, max {max(widths):.1%} "
          f"(target <= 5%); {sum(w <= 0.05 for w in widths)}/{len(widths)} within 5%")
    if gaps:
        print(f"the {len(common)} architectures of both campaigns (target >= 8): |difference| median "
              f"{statistics.median(gaps):.1%}, max {max(gaps):.1%}; {sum(g <= 0.05 for g in gaps)}/{len(gaps)} "
              "within 5%")
    else:
        print("no architecture was measured in both campaigns (target >= 8)")
    return {"half_widths": widths, "common": len(common), "gaps": gaps,
            "pairs": [{"arch_id": k, "a_ms": stored[0][k]["latency_ms"], "b_ms": stored[1][k]["latency_ms"]}
                      for k in common]}


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
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--processes", type=int, default=5, help="separate processes for repeatability")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time cap of one paired measurement")
    parser.add_argument("--cost-samples", type=int, default=20, help="networks of the cost comparison")
    parser.add_argument("--rank-samples", type=int, default=30, help="networks of the runtimes' rank agreement")
    parser.add_argument("--campaign", action="store_true", help="also run the demo campaign twice (cache off)")
    parser.add_argument("--campaign-trials", type=int, default=12)
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["repeatability", "cost", "runtimes", "references", "lut"])
    parser.add_argument("--samples", type=int, default=50, help="lut: random architectures evaluated")
    parser.add_argument("--calibration-samples", type=int, default=10, help="lut: other architectures to calibrate on")
    parser.add_argument("--space", default="auto", help="lut: 'auto' (mnasnet), a space name, or 'refs'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-repeats", type=int, default=50, help="lut: most timed runs per measurement")
    parser.add_argument("--lut-runtime", choices=["onnxruntime", "mindspore"], default=None,
                        help="lut: the runtime (default: the CPU's, onnxruntime)")
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--lut-dir", default=None, help="lut: keep the table here (default: a temporary directory)")
    parser.add_argument("--interpolation", type=int, default=0, metavar="N",
                        help="lut: also check N interpolated NetAdapt widths against their measurement")
    parser.add_argument("--grid-step", type=int, default=4, help="coarse grid for --interpolation (default 4)")
    args = parser.parse_args()
    sections = args.only if args.only is not None else ["repeatability", "cost", "runtimes", "references"]
    named = sections + (["campaign"] if args.campaign else [])
    report = "latency" if args.only is None else "_".join(["latency", *named])

    figures: dict = {"args": vars(args)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as folder:
        os.environ["NAS_CACHE_DIR"] = str(Path(folder) / "cache")  # a fresh anchor store and cache
        os.environ["NAS_LOCK_DIR"] = str(Path(folder) / "locks")
        stamp = make_backend(LatencyConfig(cache=False, threads=args.threads)).stamp(resolution=args.resolution)
        print(f"device: {stamp.describe()}")
        figures["stamp"] = stamp.to_dict()
        def lut_section() -> dict:
            backend = make_backend(LatencyConfig(cache=False, resolution=args.resolution, threads=args.threads,
                                                 max_repeats=args.max_repeats, tolerance=args.tolerance,
                                                 protocol="plain", runtime=args.lut_runtime))
            found = lut_accuracy(backend, args, Path(args.lut_dir or Path(folder) / "lut"))
            if args.interpolation > 0:
                found["interpolation"] = interpolation(backend, args, Path(folder) / "grid")
            return found

        run: dict[str, Callable[[], Any]] = {
            "repeatability": lambda: [repeatability(args, runtime, protocol)
                                      for runtime in ("onnxruntime", "mindspore") for protocol in ("paired", "plain")],
            "cost": lambda: cost(args), "runtimes": lambda: runtimes(args),
            "references": lambda: references_vs_pixel1(args), "lut": lut_section,
            "campaign": lambda: campaign(args, Path(folder) / "runs")}
        for section in sections + (["campaign"] if args.campaign else []):
            figures[section] = run[section]()
            write_report(report, figures)  # after each section: a later failure loses nothing
    figures["total_s"] = time.perf_counter() - started
    print(f"total {figures['total_s']:.0f} s")
    write_report(report, figures)


if __name__ == "__main__":
    main()
