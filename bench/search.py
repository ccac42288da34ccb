"""A real search on the real task: ``experiments/fashion_mnist.yaml`` run with the RL controller
(LSTM + PPO) and with one Optuna sampler, each to a trial budget that fits in about an hour on
this 2-core machine, and its searched front set against the campaign's own baselines (the
space's reference at several widths, same proxy, same latency protocol, same device).

Reported per controller: finished trials, wall time, the baselines, and the front against them:
the accuracy gain at equal latency (in points) and the speed-up at equal accuracy, both
interpolated on the baselines' curve (``nas.campaign.baselines.compare``). The targets are a
speed-up of at least 1.2x or a gain of at least +1.0 point against the baseline curve (the anchor:
MnasNet-A1 is 1.8x faster than MobileNetV2 1.4 at +0.5% top-1 on ImageNet).

Each campaign is an ordinary ``nas search`` run kept under ``--out`` (``runs/<name>``), so an
interrupted benchmark resumes its campaigns where they stopped. The Pareto plot of each
(baselines, front and all trials) is copied to ``bench/results/search_<controller>.png``.

A front picked from many single-seed trainings is biased upward: each of its points is partly
there because its seed was lucky, and the proxy's seed noise is about a point of top-1. So the
benchmark then confirms it (``--confirm-seeds N``, default 2): the front's networks and the
baselines are trained again with N fresh training seeds (same proxy, same data split), and the
comparison is repeated on those fresh accuracies alone, which the selection never saw. Those
trainings are kept in ``--out``/``confirm.jsonl`` and are resumed and shared between controllers.

    python -m bench.search                          # rl and tpe, 24 trials each (about 1 hour each)
    python -m bench.search --controllers tpe --trials 60
    python -m bench.search --smoke                  # minutes: digits, 3 trials, 2 baselines
    python -m bench.search --confirm-seeds 0        # the campaigns' own single-seed comparison only
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml

from bench.common import RESULTS, Ledger, run_pool, write_report
from nas.campaign.baselines import BaselineStudy, compare, front_of, read_baselines
from nas.campaign.config import EvaluatorConfig, default_storage
from nas.campaign.results import pareto_mask, trials_frame
from nas.campaign.study import open_study
from nas.spec import ArchSpec
from nas.training.data import open_cached
from nas.training.proxy import train_proxy

ROOT = Path(__file__).resolve().parent.parent
SPEEDUP_TARGET = 1.2
GAIN_TARGET = 1.0  # points
SMOKE = {"evaluator": {"dataset": "digits", "resolution": 16, "held_out": 0.2, "subset": 0, "threads": 1,
                       "train": {"epochs": 1, "batch_size": 64, "lr": 0.05}},
         "latency": {"resolution": 64, "max_seconds": 3}, "baselines": {"widths": [0.35, 0.5]}}


def campaign_config(path: Path, controller: str, trials: int, minutes: float, smoke: bool) -> dict:
    """The experiment's campaign (read as data: our own file, ``yaml.safe_load``), renamed per
    controller and given this benchmark's budget."""
    config = yaml.safe_load(path.read_text())
    config["name"] = f"{config['name']}_{controller}" + ("_smoke" if smoke else "")
    options = config["controller"].get("options", {}) if config["controller"]["name"] == controller else {}
    config["controller"] = {"name": controller, "options": options}
    config["budget"] = {**config.get("budget", {}), "trials": trials, "wall_time_s": minutes * 60}
    if smoke:
        for key, value in SMOKE.items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def run_campaign(config: dict, out: Path) -> float:
    """``nas search`` on ``config`` under ``out``; its output goes to this console. Returns the wall
    seconds of this campaign over every invocation (a resumed one adds to a ledger beside it)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, GLOG_v="3", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nas.cli", "search", "-c", str(path), "--runs-dir",
                           str(out / "runs")], env=env, timeout=4 * 3600)
    if done.returncode != 0:
        raise SystemExit(f"bench.search: nas search -c {path} exited {done.returncode} (its error is above)")
    ledger = out / f"{config['name']}.wall_s"
    with ledger.open("a") as handle:
        handle.write(f"{time.perf_counter() - started:.1f}\n")
    return sum(float(line) for line in ledger.read_text().split())


def report(run_dir: Path, wall_s: float, smoke: bool) -> dict:
    """The campaign's trials and its front against its baselines; draws its Pareto plot."""
    study, config = open_study(run_dir)
    frame = trials_frame(study.get_trials(deepcopy=False))
    done = frame[frame["state"] == "COMPLETE"]
    baselines = read_baselines(config.storage or default_storage(run_dir), config.name)
    front = front_of(frame)
    comparison = compare(front, baselines)
    subprocess.run([sys.executable, "-m", "nas.cli", "plot", str(run_dir)], check=True, capture_output=True,
                   timeout=1800, env=dict(os.environ, GLOG_v="3"))
    plot = RESULTS / f"search_{'smoke_' if smoke else ''}{config.controller.name}.png"
    shutil.copyfile(run_dir / "pareto.png", plot)
    meets = meets_target(comparison)
    return {"controller": config.controller.name, "run": str(run_dir), "trials": int(len(done)),
            "failed": int((frame["state"] == "FAIL").sum()), "wall_s": wall_s,
            "baselines": [{"width": p.width, "accuracy": p.accuracy, "latency_ms": p.latency_ms} for p in baselines],
            "front": [{"latency_ms": ms, "accuracy": acc} for ms, acc in front],
            "comparison": asdict(comparison), "summary": comparison.describe(), "meets_target": meets,
            "plot": str(plot)}


def retrain(spec_yaml: str, evaluator: EvaluatorConfig, data_seed: int, seed: int) -> float:
    """Held-out top-1 of one more proxy training (in a worker process): the campaign's proxy and
    data split (``data_seed``), training seed ``seed``."""
    data = open_cached(evaluator.data_config(data_seed))
    return train_proxy(ArchSpec.from_yaml(spec_yaml), data, evaluator.train_config(seed), device=None,
                       threads=evaluator.threads).top1


def confirm(run_dir: Path, seeds: int, out: Path, workers: int) -> dict[str, Any]:
    """The front and the baselines of a finished campaign, trained again with ``seeds`` fresh
    training seeds; the comparison repeated on their mean fresh accuracy (latency as measured)."""
    study, config = open_study(run_dir)
    trials = study.get_trials(deepcopy=False)
    frame = trials_frame(trials)
    by_number = {trial.number: trial for trial in trials}
    front_rows = {}  # by architecture: a repeated one (its result reused) is one front point, not two
    for row in frame[frame["pareto"].astype(bool)].itertuples():
        front_rows.setdefault(row.arch_id, (row.arch_id, by_number[row.trial].user_attrs["spec_yaml"],
                                            float(row.latency_ms), float(row.accuracy)))
    front = list(front_rows.values())
    baseline_trials = {t.user_attrs["arch_id"]: t for t in
                       BaselineStudy(config.storage or default_storage(run_dir), config.name, create=False).trials()
                       if t.state.name == "COMPLETE"}
    baselines = read_baselines(config.storage or default_storage(run_dir), config.name)
    networks = {arch: spec for arch, spec, _, _ in front}
    networks.update({point.arch_id: baseline_trials[point.arch_id].user_attrs["spec_yaml"] for point in baselines})
    # the proxy, as its key: a ledger row is reused only for the same data, schedule and seed
    proxy = hashlib.sha256(json.dumps([asdict(config.evaluator), config.seed], sort_keys=True,
                                      default=str).encode()).hexdigest()[:12]
    ledger = Ledger(out / "confirm.jsonl", ("proxy", "arch_id", "seed"))
    fresh = [config.seed + k for k in range(1, seeds + 1)]
    todo = [(arch, seed) for arch in networks for seed in fresh if (proxy, arch, seed) not in ledger.done]
    print(f"confirming {config.name}: {len(front)} front points and {len(baselines)} baselines, {seeds} fresh "
          f"seeds; {len(todo)} of {len(networks) * seeds} trainings to run", flush=True)

    arch_of = {spec: arch for arch, spec in networks.items()}

    def finished(job: tuple[Any, ...], top1: float) -> str:
        arch, seed = arch_of[job[0]], job[3]
        ledger.add({"proxy": proxy, "arch_id": arch, "seed": seed, "top1": top1})
        return f"{arch} seed {seed}: top1 {top1:.4f}"

    run_pool([(networks[arch], config.evaluator, config.seed, seed) for arch, seed in todo], retrain, workers,
             finished)

    def accuracy(arch: str) -> tuple[float, float]:
        values = [float(ledger.done[(proxy, arch, seed)]["top1"]) for seed in fresh]
        return statistics.fmean(values), statistics.pstdev(values)

    again_front = [(ms, *accuracy(arch), acc, arch) for arch, _, ms, acc in front]
    keep = pareto_mask([row[1] for row in again_front], [row[0] for row in again_front]) if again_front else []
    confirmed_front = [(row[0], row[1]) for row, kept in zip(again_front, keep) if kept]
    confirmed_baselines = [replace(point, accuracy=accuracy(point.arch_id)[0]) for point in baselines]
    comparison = compare(confirmed_front, confirmed_baselines)

    def gain(ms: float, top1: float) -> float | None:
        """One front point's fresh gain over the fresh baseline curve (points; None outside its
        latency range): the comparison above keeps only the best point, this shows whether the rest agree."""
        return compare([(ms, top1)], confirmed_baselines).gain_points

    seed_std = statistics.fmean(accuracy(arch)[1] for arch in networks) if networks else 0.0
    drop = statistics.fmean(row[3] - row[1] for row in again_front) if again_front else 0.0
    return {"seeds": fresh, "seed_std": seed_std, "front_drop_points": 100.0 * drop,
            "front": [{"arch_id": row[4], "latency_ms": row[0], "searched": row[3], "fresh": row[1],
                       "fresh_std": row[2], "gain_points": gain(row[0], row[1])} for row in again_front],
            "baselines": [asdict(point) for point in confirmed_baselines], "comparison": asdict(comparison),
            "summary": comparison.describe(), "meets_target": meets_target(comparison)}


def table(rows: list[dict[str, Any]], comparisons: list[dict[str, Any]], meets: list[bool]) -> None:
    print("| controller | trials | wall (min) | gain at equal latency | speed-up at equal accuracy | target met |")
    print("|---|---|---|---|---|---|")
    for row, c, met in zip(rows, comparisons, meets):
        gain = "n/a" if c["gain_points"] is None else f"{c['gain_points']:+.2f} pt at {c['gain_at_ms']:.2f} ms"
        speed = "n/a" if c["speedup"] is None else f"{c['speedup']:.2f}x at {c['speedup_at_accuracy']:.4f}"
        print(f"| {row['controller']} | {row['trials']} | {row['wall_s'] / 60:.1f} | {gain} | {speed} | "
              f"{'yes' if met else 'no'} |")


def meets_target(comparison: Any) -> bool:
    return (comparison.speedup or 0.0) >= SPEEDUP_TARGET or (comparison.gain_points or -1e9) >= GAIN_TARGET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=str(ROOT / "experiments" / "fashion_mnist.yaml"))
    parser.add_argument("--controllers", default="rl,tpe", help="comma separated (rl, tpe, evolution, nsga2, random)")
    parser.add_argument("--trials", type=int, default=24, help="finished trials per campaign (baselines not counted)")
    parser.add_argument("--minutes", type=float, default=75.0, help="wall-time cap per campaign")
    parser.add_argument("--out", default=str(RESULTS / "search"), help="where the campaigns are kept (resumable)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on digits: checks that it all runs")
    parser.add_argument("--confirm-seeds", type=int, default=2, help="fresh training seeds for the front and the "
                        "baselines after each campaign (0: none; the comparison is then the campaign's own)")
    parser.add_argument("--jobs", type=int, default=2, help="confirmation trainings at once")
    args = parser.parse_args(argv)
    if args.confirm_seeds < 0 or args.jobs < 1:
        raise SystemExit(f"--confirm-seeds {args.confirm_seeds} / --jobs {args.jobs}: need >= 0 and >= 1")
    if args.smoke:
        args.trials, args.minutes = min(args.trials, 3), min(args.minutes, 20.0)
    config_path = Path(args.config)
    if not config_path.is_file():
        raise SystemExit(f"--config: {str(config_path)!r} does not exist")
    out = Path(args.out)
    rows = []
    for controller in [name.strip() for name in args.controllers.split(",") if name.strip()]:
        config = campaign_config(config_path, controller, args.trials, args.minutes, args.smoke)
        print(f"== {controller}: {config['name']}, {args.trials} trials (cap {args.minutes:g} min)", flush=True)
        wall = run_campaign(config, out)
        rows.append(report(out / "runs" / config["name"], wall, args.smoke))
        if args.confirm_seeds:
            rows[-1]["confirmed"] = confirm(out / "runs" / config["name"], args.confirm_seeds, out, args.jobs)
    print("\nAs searched (each network trained once, with the campaign's seed):")
    table(rows, [row["comparison"] for row in rows], [row["meets_target"] for row in rows])
    for row in rows:
        print(f"{row['controller']}: {row['summary']}; plot {row['plot']}")
    confirmed = [row for row in rows if "confirmed" in row]
    if confirmed:
        print(f"\nConfirmed (the front and the baselines trained again with {args.confirm_seeds} fresh seeds; "
              "their mean top-1, which the search never saw):")
        table(confirmed, [row["confirmed"]["comparison"] for row in confirmed],
              [row["confirmed"]["meets_target"] for row in confirmed])
        for row in confirmed:
            c = row["confirmed"]
            print(f"{row['controller']}: {c['summary']}; the front's fresh top-1 minus its searched top-1: "
                  f"{-c['front_drop_points']:+.2f} points on average; seed std {100 * c['seed_std']:.2f} points")
            for point in sorted(c["front"], key=lambda point: point["latency_ms"]):
                versus = ("outside the baselines' latency range" if point["gain_points"] is None
                          else f"{point['gain_points']:+.2f} points against the curve")
                print(f"  {point['arch_id']} {point['latency_ms']:.3f} ms: top-1 searched {point['searched']:.4f}, "
                      f"fresh {point['fresh']:.4f} +- {point['fresh_std']:.4f}; {versus}")
    write_report("search_smoke" if args.smoke else "search", {"args": vars(args), "controllers": rows,
                                                              "targets": {"speedup": SPEEDUP_TARGET,
                                                                          "gain_points": GAIN_TARGET}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
