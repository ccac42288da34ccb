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

    python -m bench.search                          # rl and tpe, 40 trials each (about 1 hour each)
    python -m bench.search --controllers tpe --trials 60
    python -m bench.search --smoke                  # minutes: digits, 3 trials, 2 baselines
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from bench.common import RESULTS, write_report
from nas.campaign.baselines import compare, front_of, read_baselines
from nas.campaign.config import default_storage
from nas.campaign.results import trials_frame
from nas.campaign.study import open_study

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
    meets = ((comparison.speedup or 0.0) >= SPEEDUP_TARGET or (comparison.gain_points or -1e9) >= GAIN_TARGET)
    return {"controller": config.controller.name, "run": str(run_dir), "trials": int(len(done)),
            "failed": int((frame["state"] == "FAIL").sum()), "wall_s": wall_s,
            "baselines": [{"width": p.width, "accuracy": p.accuracy, "latency_ms": p.latency_ms} for p in baselines],
            "front": [{"latency_ms": ms, "accuracy": acc} for ms, acc in front],
            "comparison": asdict(comparison), "summary": comparison.describe(), "meets_target": meets,
            "plot": str(plot)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=str(ROOT / "experiments" / "fashion_mnist.yaml"))
    parser.add_argument("--controllers", default="rl,tpe", help="comma separated (rl, tpe, evolution, nsga2, random)")
    parser.add_argument("--trials", type=int, default=40, help="finished trials per campaign (baselines not counted)")
    parser.add_argument("--minutes", type=float, default=75.0, help="wall-time cap per campaign")
    parser.add_argument("--out", default=str(RESULTS / "search"), help="where the campaigns are kept (resumable)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on digits: checks that it all runs")
    args = parser.parse_args(argv)
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
    print("\n| controller | trials | wall (min) | gain at equal latency | speed-up at equal accuracy | target met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        c = row["comparison"]
        gain = "n/a" if c["gain_points"] is None else f"{c['gain_points']:+.2f} pt at {c['gain_at_ms']:.2f} ms"
        speed = "n/a" if c["speedup"] is None else f"{c['speedup']:.2f}x at {c['speedup_at_accuracy']:.4f}"
        print(f"| {row['controller']} | {row['trials']} | {row['wall_s'] / 60:.1f} | {gain} | {speed} | "
              f"{'yes' if row['meets_target'] else 'no'} |")
    for row in rows:
        print(f"{row['controller']}: {row['summary']}; plot {row['plot']}")
    write_report("search_smoke" if args.smoke else "search", {"args": vars(args), "controllers": rows,
                                                              "targets": {"speedup": SPEEDUP_TARGET,
                                                                          "gain_points": GAIN_TARGET}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
