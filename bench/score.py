"""Which execution mode scores a proxy-trained network faster: GRAPH or PYNATIVE.

A proxy's scoring is the batch-norm recalibration (``RECALIBRATION_BATCHES`` training batches)
and the held-out evaluation. In GRAPH mode it compiles three graphs (the recalibration's two
momenta, the evaluation) and then runs each pass fast; in PYNATIVE mode it compiles nothing and
runs each pass op by op. Which wins depends on the number of forward passes, so this benchmark
times both modes, each in a fresh process (as a campaign worker's job starts with no compiled
graph), alternating ``--rounds`` times, over held-out sets of several sizes:

- ``demo``: the demo campaign's evaluator (digits, 20% held out, batch 32);
- ``fmnist-<fraction>``: the Fashion-MNIST campaign's evaluator with ``held_out`` at each of
  ``--fractions``.

The network is the space's reference at ``--width`` (its weights do not change the time). It
prints, per setting, the forward passes, each mode's median seconds and their ratio, and the mode
:func:`nas.training.proxy.score_mode` picks; the threshold
:data:`~nas.training.proxy.SCORE_PYNATIVE_MAX_BATCHES` should sit at the crossover.

    python -m bench.score [--rounds 2] [--width 0.5] [--fractions 0.02,0.05,0.1,0.2]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import math
import multiprocessing
import statistics
import time
from pathlib import Path

from bench.common import write_report
from nas.campaign.config import EvaluatorConfig, load_config
from nas.models.builder import build_network
from nas.training.data import open_cached
from nas.training.engine import configure_threads, evaluate, recalibrate_batch_norm, set_execution_mode
from nas.training.proxy import RECALIBRATION_BATCHES, SCORE_PYNATIVE_MAX_BATCHES, score_batch, score_mode
from search_spaces import references

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def evaluators(fractions: list[float]) -> dict[str, EvaluatorConfig]:
    """The settings timed: the demo's evaluator, and the Fashion-MNIST one at each held-out fraction."""
    fashion = load_config(EXPERIMENTS / "fashion_mnist.yaml").evaluator
    found = {"demo": load_config(EXPERIMENTS / "demo.yaml").evaluator}
    for fraction in fractions:
        found[f"fmnist-{fraction:g}"] = dataclasses.replace(fashion, held_out=fraction)
    return found


def time_scoring(evaluator: EvaluatorConfig, mode: str, width: float) -> dict:
    """One scoring of a fresh reference network in ``mode``, in this (fresh) process."""
    configure_threads(evaluator.threads)
    data = open_cached(evaluator.data_config(0))
    batch = evaluator.train_config(0).batch_size
    spec = references.get("mobilenet_v2", width).replace(num_classes=data.num_classes,
                                                         resolution=evaluator.resolution)
    net = build_network(spec, num_classes=data.num_classes, seed=0)
    set_execution_mode(mode)
    started = time.perf_counter()
    used = recalibrate_batch_norm(net, data.train(batch, epoch=0), RECALIBRATION_BATCHES)
    recalibrated = time.perf_counter()
    result = evaluate(net, data.held_out(score_batch(batch)))
    finished = time.perf_counter()
    return {"mode": mode, "passes": used + math.ceil(result.images / score_batch(batch)),
            "recalibrate_s": recalibrated - started, "evaluate_s": finished - recalibrated,
            "total_s": finished - started, "top1": result.top1, "picked": score_mode(data, batch)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per mode and setting, alternating")
    parser.add_argument("--width", type=float, default=0.5, help="width of the MobileNetV2 reference scored")
    parser.add_argument("--fractions", default="0.02,0.05,0.1,0.2",
                        help="held-out fractions of Fashion-MNIST's 60,000 training images")
    args = parser.parse_args(argv)
    try:
        fractions = [float(part) for part in args.fractions.split(",")]
    except ValueError:
        parser.error(f"--fractions: {args.fractions!r} is not a comma-separated list of numbers")
    if args.rounds < 1:
        parser.error(f"--rounds: {args.rounds} must be at least 1")
    context = multiprocessing.get_context("spawn")  # a fresh MindSpore per measurement: nothing compiled yet
    rows = []
    for name, evaluator in evaluators(fractions).items():
        for round_index in range(args.rounds):
            for mode in ("graph", "pynative"):
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                    row = pool.submit(time_scoring, evaluator, mode, args.width).result()
                rows.append({"setting": name, "round": round_index, **row})
                print(f"{name:<13} round {round_index} {mode:<8} {row['passes']:4d} passes: {row['total_s']:6.2f} s "
                      f"(recalibrate {row['recalibrate_s']:.2f} + evaluate {row['evaluate_s']:.2f})", flush=True)
    settings = []
    print(f"\nMobileNetV2 x{args.width:g}; PYNATIVE is picked up to {SCORE_PYNATIVE_MAX_BATCHES} passes")
    print("| setting | passes | graph s | pynative s | pynative / graph | picked |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(row["setting"] for row in rows):
        mine = [row for row in rows if row["setting"] == name]
        graph = statistics.median(row["total_s"] for row in mine if row["mode"] == "graph")
        pynative = statistics.median(row["total_s"] for row in mine if row["mode"] == "pynative")
        same = len({row["top1"] for row in mine}) == 1
        entry = {"setting": name, "passes": mine[0]["passes"], "graph_s": graph, "pynative_s": pynative,
                 "ratio": pynative / graph, "picked": mine[0]["picked"], "same_top1": same}
        settings.append(entry)
        print(f"| {name} | {entry['passes']} | {graph:.2f} | {pynative:.2f} | {entry['ratio']:.2f}x | "
              f"{entry['picked']} |")
    if not all(entry["same_top1"] for entry in settings):
        print("warning: the two modes scored a network differently")
    write_report("score", {"args": vars(args), "threshold": SCORE_PYNATIVE_MAX_BATCHES, "rows": rows,
                           "settings": settings})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
