"""NetAdapt benchmark: pruned networks against width multipliers, by measured latency.

1. Train a MobileNetV3-Small-style seed (``--width``) on ``--data`` (default Fashion-MNIST, where
   width matters; on digits every width saturates near 97%) for ``--seed-epochs``.
2. Estimate latency with the fitted predictor of ``--lut DIR`` (``nas latency fit --lut DIR
   --netadapt 30``, at the latency resolution and stamp of this machine), scaled by the pooled
   anchor: the median measured/predicted ratio over the networks the run has measured. Without
   ``--lut``, build one look-up table for the seed (real measurements, the NetAdapt grid).
3. Run NetAdapt once down to the smallest budget; the networks for the larger budgets are the
   first iterations whose *measured* latency meets them (a run with that budget follows the same
   path, except that its last step would stop at the budget). A budget the run does not reach
   (``--max-iters``) is stood for by the last iteration, flagged ``met: false`` in the report.
4. Give each of them the same long-term fine-tune (``--long-term-epochs``).
5. Train width-multiplier baselines (``--baseline-widths``, relative to the seed's width, plus
   the seed's own width) from scratch for the same total epochs (seed + long-term).
6. Measure every network back to back in one worker (paired, under the same load), and report
   both curves (latency against held-out top-1), the latency ratio at equal accuracy
   (baseline latency interpolated at each NetAdapt network's accuracy, over NetAdapt's latency:
   the paper's anchor is up to 1.7x), and the wall time per iteration.

    nas latency fit --lut bench/results/predictor-fmnist --resolution 224 --threads 1  # once: the predictor
    python -m bench.netadapt --lut bench/results/predictor-fmnist                      # the full run (hours)
    python -m bench.netadapt --smoke         # a few minutes: tiny settings, checks that it all runs

Figures go to stdout, ``bench/results/netadapt.json`` and ``bench/results/netadapt.png``.

The full run takes hours here, so it resumes: every stage keeps its result in ``--work`` (the
trainings' checkpoints and top-1, the look-up table, the NetAdapt run, the long-term fine-tunes),
and a second run with the same settings starts where the first stopped (a training killed halfway
starts over). ``--fresh`` starts from nothing; other settings in an existing ``--work`` are refused.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, write_report
from latency.config import LatencyConfig, make_backend
from latency.predictor import has_predictor, load_predictor
from nas.campaign.plots import draw_trajectory
from nas.models.builder import build_network
from nas.models.checkpoint import save_weights
from nas.spec import ArchSpec
from nas.training.config import DataConfig, TrainConfig
from nas.training.data import open_data
from nas.training.engine import Trainer, evaluate, set_execution_mode
from netadapt.config import LONG_TERM, SHORT_TERM, NetAdaptConfig
from netadapt.errors import BudgetUnreachableError, NoisyLatencyError
from netadapt.estimates import BackendMeter, LUTPredictor, build_netadapt_lut
from netadapt.history import load_trajectory, read_history
from netadapt.run import STATE, NetAdapt, long_term_fine_tune
from search_spaces import references

SMOKE = {"data": "digits", "width": 0.5, "seed_epochs": 2, "long_term_epochs": 1, "budgets": "0.95,0.9",
         "baseline_widths": "0.5", "short_term_steps": 4, "targets": "group,head", "lut_grid_step": 8,
         "lut_calibration": 2, "latency_resolution": 128, "max_iters": 3, "fixed_ratio": 0.05}


def _train(spec: Any, epochs: int, args: argparse.Namespace, out: Path) -> tuple[Path, float, float]:
    """Train from scratch (cosine LR, short warm-up); return the checkpoint, held-out top-1 and seconds.
    The held-out split is NetAdapt's (same data seed and fraction)."""
    import mindspore as ms  # heavy: loaded when the benchmark runs, not on import

    done = out / "result.json"
    if done.is_file() and (out / "spec.yaml").is_file() and ArchSpec.from_yaml(out / "spec.yaml") == spec:
        kept = json.loads(done.read_text())
        return out / "model.ckpt", float(kept["top1"]), float(kept["seconds"])
    set_execution_mode("graph")
    data = open_data(DataConfig(args.data, resolution=args.resolution, held_out=0.2, seed=args.seed))
    config = TrainConfig(epochs=epochs, batch_size=args.batch_size, base_batch=args.batch_size, lr=args.lr,
                         warmup_epochs=min(1.0, epochs / 4), seed=args.seed)
    started = time.perf_counter()
    ms.set_seed(args.seed)
    net = build_network(spec, seed=args.seed)
    trainer = Trainer(net, config, data.steps_per_epoch(args.batch_size), device_lock="CPU")
    trainer.fit(lambda epoch: data.train(args.batch_size, epoch=epoch))
    top1 = evaluate(net, data.held_out(512), device_lock="CPU").top1
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(spec.to_yaml())
    ckpt = save_weights(net, out / "model.ckpt", spec)
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"top1": top1, "seconds": seconds}))  # last: the stage is finished
    return ckpt, top1, seconds


def _open_work(work: Path, args: argparse.Namespace) -> None:
    """``--work``, resumed when it holds a run of the same settings, new when ``--fresh`` or absent."""
    settings = {key: value for key, value in vars(args).items() if key not in ("work", "fresh", "workers")}
    kept = work / "settings.json"
    if args.fresh and work.exists():
        shutil.rmtree(work)
    if work.exists():
        previous = json.loads(kept.read_text()) if kept.is_file() else None
        if previous != settings:
            changed = sorted(k for k in settings if previous is None or previous.get(k) != settings[k])
            raise SystemExit(f"--work {str(work)!r} holds a run of other settings ({', '.join(changed) or 'unknown'}); "
                             "pass --fresh to start over, or another --work")
        print(f"resuming the run in {work}", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(settings))


def _latency_at_accuracy(curve: list[tuple[float, float]], accuracy: float) -> float | None:
    """Latency of the (latency, accuracy) curve at ``accuracy``, linearly interpolated on the
    curve's monotone envelope (the fastest latency reaching each accuracy); None outside it."""
    points = sorted(curve)
    envelope: list[tuple[float, float]] = []
    for latency, acc in points:  # keep points that improve accuracy as latency grows
        if not envelope or acc > envelope[-1][1]:
            envelope.append((latency, acc))
    if not envelope or accuracy < envelope[0][1] or accuracy > envelope[-1][1]:
        return None
    for (l0, a0), (l1, a1) in zip(envelope, envelope[1:]):
        if a0 <= accuracy <= a1:
            return l0 if a1 == a0 else l0 + (l1 - l0) * (accuracy - a0) / (a1 - a0)
    return envelope[-1][0] if accuracy == envelope[-1][1] else envelope[0][0]


def _plot(path: Path, run_dir: Path, netadapt_points: list[dict], baselines: list[dict]) -> None:
    import matplotlib  # heavy: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 5))
    draw_trajectory(ax, load_trajectory(run_dir, name="NetAdapt (short-term)"))
    ax.plot([p["measured_ms"] for p in netadapt_points], [p["top1"] for p in netadapt_points], "s-", color="C3",
            label="NetAdapt + long-term fine-tune")
    ordered = sorted(baselines, key=lambda b: b["measured_ms"])
    ax.plot([b["measured_ms"] for b in ordered], [b["top1"] for b in ordered], "^--", color="C2",
            label="width multipliers")
    for b in ordered:
        ax.annotate(f"x{b['width']:g}", (b["measured_ms"], b["top1"]), textcoords="offset points", xytext=(3, -9),
                    fontsize=7, color="C2")
    ax.set_title("NetAdapt against width multipliers (measured latency)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny settings (minutes) to check the pipeline")
    parser.add_argument("--reference", default="mobilenet_v3_small")
    parser.add_argument("--width", type=float, default=0.75, help="width of the seed network")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--lut", default=None, metavar="DIR",
                        help="a directory with a fitted latency predictor (nas latency fit); default: build a "
                             "look-up table of the seed's NetAdapt grid")
    parser.add_argument("--resolution", type=int, default=32, help="training resolution")
    parser.add_argument("--latency-resolution", type=int, default=224,
                        help="resolution latency is measured at (compute matters there, not only op overheads)")
    parser.add_argument("--latency-threads", type=int, default=1,
                        help="threads latency is measured with (and the predictor fitted with). On this 2-core "
                             "VM, 2 threads measured 1.7x slower than 1 and drifted 1.0-1.9x within an hour; "
                             "1 thread repeated within about 10-20%%")
    parser.add_argument("--seed-epochs", type=int, default=4)
    parser.add_argument("--long-term-epochs", type=int, default=2)
    parser.add_argument("--budgets", default="0.75,0.6,0.45",
                        help="fractions of the seed's measured latency (on a CPU at this size, per-op overheads put "
                             "a floor under what narrower widths can remove: 0.35 may be out of reach)")
    parser.add_argument("--baseline-widths", default="0.35,0.5,0.65,0.8",
                        help="width multipliers relative to the seed's width (the seed's own width is added)")
    parser.add_argument("--short-term-steps", type=int, default=30)
    parser.add_argument("--schedule", default="fixed", choices=["fixed", "decay"])
    parser.add_argument("--fixed-ratio", type=float, default=0.06, help="reduction per iteration, fraction of L0")
    parser.add_argument("--targets", default="expand,group,stem,head")
    parser.add_argument("--max-iters", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lut-grid-step", type=int, default=3)
    parser.add_argument("--lut-calibration", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05, help="peak LR of from-scratch training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(RESULTS / "netadapt_work"),
                        help="working directory: resumed when it holds a run of the same settings")
    parser.add_argument("--fresh", action="store_true", help="start over: delete --work first")
    args = parser.parse_args()
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)

    set_execution_mode("graph")
    work = Path(args.work)
    _open_work(work, args)
    budgets = sorted((float(b) for b in args.budgets.split(",")), reverse=True)
    factors = sorted({float(w) for w in args.baseline_widths.split(",")} | {1.0})
    started_all = time.perf_counter()

    def make(width: float, name: str) -> ArchSpec:
        return references.get(args.reference, width).replace(num_classes=10, resolution=args.resolution, name=name)

    seed_spec = make(args.width, f"{args.reference}_{args.width:g}")
    print(f"seed {seed_spec.name}: training {args.seed_epochs} epochs at {args.resolution} px", flush=True)
    seed_ckpt, seed_top1, seed_seconds = _train(seed_spec, args.seed_epochs, args, work / "seed")
    print(f"  held-out top1 {seed_top1:.4f} ({seed_seconds:.0f} s)", flush=True)

    config = NetAdaptConfig(budget_ratio=min(budgets), max_iters=args.max_iters, schedule=args.schedule,
                            fixed_ratio=args.fixed_ratio, targets=tuple(args.targets.split(",")),
                            short_term_steps=args.short_term_steps,
                            short_term=dataclasses.replace(SHORT_TERM, batch_size=args.batch_size),
                            long_term=dataclasses.replace(LONG_TERM, epochs=args.long_term_epochs,
                                                          batch_size=args.batch_size),
                            resolution=args.resolution,
                            latency_resolution=args.latency_resolution, workers=args.workers, seed=args.seed,
                            lut_grid_step=args.lut_grid_step, lut_calibration=args.lut_calibration)
    backend = make_backend(LatencyConfig(resolution=args.latency_resolution, threads=args.latency_threads,
                                         cache=False))  # NetAdapt's own settings
    meter = BackendMeter(backend)
    started = time.perf_counter()
    if args.lut is not None:
        if not has_predictor(args.lut):
            raise SystemExit(f"--lut: {args.lut!r} has no fitted predictor; fit one with "
                             f"nas latency fit --lut {args.lut} --resolution {args.latency_resolution} "
                             f"--threads {args.latency_threads}")
        predictor: Any = load_predictor(args.lut)
        predictor.require(backend.stamp(resolution=args.latency_resolution))
        print(f"latency predictor: {args.lut} ({predictor.model.kind}, band +-{predictor.band:.1%})", flush=True)
    else:
        lut = build_netadapt_lut(work / "lut", seed_spec, backend, step=config.step_multiple,
                                 options=config.target_options(), grid_step=config.lut_grid_step,
                                 calibration=config.lut_calibration, seed=args.seed)
        predictor = LUTPredictor(lut)
        print(f"look-up table: {len(lut)} entries", flush=True)
    lut_seconds = time.perf_counter() - started

    run_dir = work / "run"
    started = time.perf_counter()
    # The loop's own end-of-run fine-tune is skipped: every budget's network gets one below.
    runner = NetAdapt(dataclasses.replace(config, long_term=None), run_dir, predictor=predictor, meter=meter,
                      log=lambda line: print(f"  {line}", flush=True))
    try:
        result = runner.run(seed_spec, seed_ckpt, args.data, resume=(run_dir / STATE).is_file())
        stop = result.status
    except BudgetUnreachableError as error:  # an unreachable budget still leaves the iterations before it
        stop = f"unreachable: {error}"
        print(f"  {stop}", flush=True)
    except NoisyLatencyError as error:
        raise SystemExit(f"bench.netadapt: {error}. What is done is kept in {str(work)!r}: run again to go "
                         "on") from None
    netadapt_seconds = time.perf_counter() - started
    history = read_history(run_dir)
    chosen = history[history["chosen"]].sort_values("iteration")
    initial_ms = float(chosen.iloc[0]["latency_ms"])
    iteration_seconds = [float(s) for s in history.loc[history["chosen"] & (history["iteration"] > 0), "iteration_s"]]
    finetune_seconds = [float(s) for s in history.loc[history["iteration"] > 0, "finetune_s"].dropna()]

    # The network of every budget: the first iteration whose measured latency meets it.
    data = open_data(DataConfig(args.data, resolution=args.resolution, held_out=0.2, seed=args.seed))
    snapshots = []
    targets: list[tuple[float, Any, bool]] = []  # (budget, the chosen row, whether it meets the budget)
    for budget in budgets:
        meeting = chosen[chosen["latency_ms"] <= budget * initial_ms]
        if meeting.empty:  # the last iteration still stands for it, as a point on the curve, flagged unmet
            last = chosen.iloc[-1]
            print(f"budget {budget:g}: not reached ({stop}); the last iteration ({int(last['iteration'])}, "
                  f"{float(last['latency_ms']) / initial_ms:.2f} of the seed) is compared instead", flush=True)
            if int(last["iteration"]) > 0:
                targets.append((budget, last, False))
            continue
        targets.append((budget, meeting.iloc[0], True))
    for budget, row, met in targets:
        iteration = int(row["iteration"])
        folder = run_dir / ("seed" if iteration == 0 else f"iterations/{iteration:04d}")
        spec = ArchSpec.from_yaml(folder / "spec.yaml")
        earlier = [snap for snap in snapshots if snap["iteration"] == iteration]
        if earlier:  # two budgets met by the same iteration: one network, one fine-tune
            top1 = earlier[0]["top1"]
        else:
            out_ckpt = work / "final" / f"iteration_{iteration:04d}.ckpt"
            kept = out_ckpt.with_suffix(".json")
            if kept.is_file():
                top1 = float(json.loads(kept.read_text())["top1"])
            else:
                top1, _ = long_term_fine_tune(spec, folder / "model.ckpt", data, config, out_ckpt,
                                              log=lambda line: None)
                kept.write_text(json.dumps({"top1": top1}))
        snapshots.append({"budget": budget, "met": met, "iteration": iteration, "spec": spec, "top1": top1,
                          "short_term_top1": float(row["top1"]), "loop_latency_ms": float(row["latency_ms"]),
                          "predicted_ms": float(row["predicted_ms"])})
        print(f"budget {budget:g}{'' if met else ' (not met)'}: iteration {iteration}, "
              f"top1 {float(row['top1']):.4f} -> {top1:.4f} after the "
              "long-term fine-tune", flush=True)

    baselines = []
    for factor in factors:
        width = round(args.width * factor, 4)
        spec = make(width, f"{args.reference}_{width:g}")
        _, top1, seconds = _train(spec, args.seed_epochs + args.long_term_epochs, args, work / f"baseline_{width:g}")
        baselines.append({"width": width, "factor": factor, "spec": spec, "top1": top1, "train_s": seconds,
                          "predicted_ms": float(predictor.predict(spec)) if factor == 1.0 else None})
        print(f"baseline x{width:g}: top1 {top1:.4f} ({seconds:.0f} s)", flush=True)

    # Every network measured back to back in one worker: paired figures under the same load.
    specs = [seed_spec] + [s["spec"] for s in snapshots] + [b["spec"] for b in baselines]
    measured = [r.median_ms for r in backend.measure_many(specs)]
    seed_ms = measured[0]
    for item, ms_value in zip(snapshots + baselines, measured[1:]):
        item["measured_ms"] = ms_value
    baseline_curve = [(b["measured_ms"], b["top1"]) for b in baselines]
    comparisons = []
    for snap in snapshots:
        reference_ms = _latency_at_accuracy(baseline_curve, snap["top1"])
        ratio = reference_ms / snap["measured_ms"] if reference_ms is not None else None
        comparisons.append({"budget": snap["budget"], "met": snap["met"], "netadapt_ms": snap["measured_ms"],
                            "top1": snap["top1"],
                            "baseline_ms_at_equal_top1": reference_ms, "latency_ratio": ratio})

    print("\nNetAdapt (after the long-term fine-tune), measured back to back with the seed:")
    print(f"  seed: {seed_ms:.3f} ms, top1 {seed_top1:.4f} (trained {args.seed_epochs} epochs)")
    for snap, comparison in zip(snapshots, comparisons):
        ratio = comparison["latency_ratio"]
        ratio_text = f"{ratio:.2f}x" if ratio is not None else "outside the baselines' accuracy range"
        share = snap['measured_ms'] / seed_ms
        print(f"  budget {snap['budget']:g}{'' if snap['met'] else ' (not met: last iteration)'}: "
              f"{snap['measured_ms']:.3f} ms ({share:.2f} of the seed; "
              f"{snap['predicted_ms']:.3f} ms predicted), top1 {snap['top1']:.4f}; width multipliers at equal "
              f"accuracy: {ratio_text}")
    print("width multipliers (trained from scratch for the same total epochs):")
    for b in baselines:
        print(f"  x{b['width']:g}: {b['measured_ms']:.3f} ms, top1 {b['top1']:.4f}")
    if iteration_seconds:
        print(f"wall time per iteration: median {statistics.median(iteration_seconds):.1f} s over "
              f"{len(iteration_seconds)} iterations; per proposal fine-tune median "
              f"{statistics.median(finetune_seconds):.1f} s; look-up table {lut_seconds:.0f} s")
    plot_path = RESULTS / "netadapt.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    if snapshots:
        _plot(plot_path, run_dir, snapshots, baselines)

    def clean(item: dict) -> dict:
        return {key: value for key, value in item.items() if key != "spec"} | {"arch_id": item["spec"].arch_id}

    write_report("netadapt", {
        "settings": {key: value for key, value in vars(args).items()},
        "seed": {"measured_ms": seed_ms, "top1": seed_top1, "train_s": seed_seconds},
        "netadapt": [clean(s) for s in snapshots], "baselines": [clean(b) for b in baselines],
        "latency_ratio_at_equal_accuracy": comparisons, "stop": stop,
        "iterations": int(chosen["iteration"].max()), "iteration_wall_s": iteration_seconds,
        "proposal_finetune_s": finetune_seconds, "lut_build_s": lut_seconds, "netadapt_s": netadapt_seconds,
        "total_s": time.perf_counter() - started_all, "plot": str(plot_path) if snapshots else None,
        "history": json.loads(history.to_json(orient="records")),
    })


if __name__ == "__main__":
    main()
