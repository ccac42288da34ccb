"""Campaign benchmark on the demo setup (experiments/demo.yaml): trials per hour with 1 and with 2
workers, the framework's overhead, and the demo's wall time (search + export + plot).

Overhead share = 1 - (time inside training and measurement, summed over trials) / (wall time x
workers): every worker-second not spent evaluating (Ray start-up, the driver, idle slots).

    python -m bench.campaign [--trials-1 8] [--trials-2 16]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import write_report
from nas.campaign.config import default_storage

ROOT = Path(__file__).resolve().parent.parent


def _nas(*args: str, cwd: Path) -> float:
    env = dict(os.environ, GLOG_v="3", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas.cli", *args], cwd=cwd, env=env, check=True, capture_output=True,
                   timeout=7200)
    return time.perf_counter() - started


def _campaign(folder: Path, name: str, workers: int, trials: int) -> dict:
    import optuna  # heavy: only this function reads the study

    config = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    config.update(name=name, workers=workers, baselines="none")  # trials per hour of the search alone
    config["budget"]["trials"] = trials
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    wall = _nas("search", "-c", str(path), "--runs-dir", str(folder / "runs"), cwd=folder)
    study = optuna.load_study(study_name=name, storage=default_storage(folder / "runs" / name))
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    inside = sum(t.user_attrs.get("total_seconds", 0.0) for t in done if "reused_from" not in t.user_attrs)
    evaluated = sum(1 for t in done if "reused_from" not in t.user_attrs)
    overhead = 1.0 - inside / (wall * workers)
    result = {"workers": workers, "trials": len(done), "evaluated": evaluated, "wall_s": wall,
              "trials_per_hour": len(done) / wall * 3600, "inside_s": inside, "overhead_share": overhead,
              "mean_trial_s": inside / max(1, evaluated),
              "best_reward": max((t.user_attrs["reward"] for t in done), default=float("nan"))}
    print(f"{workers} worker(s): {len(done)} trials ({evaluated} evaluated) in {wall:.0f} s = "
          f"{result['trials_per_hour']:.0f} trials/h; mean trial {result['mean_trial_s']:.1f} s; "
          f"overhead {overhead:.1%}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials-1", type=int, default=8, help="trials of the 1-worker campaign")
    parser.add_argument("--trials-2", type=int, default=16, help="trials of the 2-worker campaign (the demo's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        os.environ["NAS_CACHE_DIR"] = str(folder / "cache")  # measure, don't reuse earlier runs' latency
        two = _campaign(folder, "bench2", 2, args.trials_2)
        export_s = _nas("export", str(folder / "runs" / "bench2"), "--best", "--pareto", cwd=folder)
        plot_s = _nas("plot", str(folder / "runs" / "bench2"), cwd=folder)
        one = _campaign(folder, "bench1", 1, args.trials_1)
    demo_wall = two["wall_s"] + export_s + plot_s
    print(f"demo (search {two['trials']} trials on 2 workers + export + plot): {demo_wall:.0f} s "
          f"(search {two['wall_s']:.0f}, export {export_s:.0f}, plot {plot_s:.0f}); target < 600 s")
    print(f"2 workers vs 1: {two['trials_per_hour'] / one['trials_per_hour']:.2f}x trials per hour")
    write_report("campaign", {"args": vars(args), "one_worker": one, "two_workers": two,
                              "speedup_2_vs_1": two["trials_per_hour"] / one["trials_per_hour"],
                              "demo_wall_s": demo_wall, "export_s": export_s, "plot_s": plot_s})


if __name__ == "__main__":
    main()
