"""``nas search``: run or resume a campaign."""
from __future__ import annotations

import argparse
import dataclasses

from nas.campaign.config import load_config
from nas.campaign.driver import run_campaign
from nas.campaign.rundir import RunDir


def _search(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    changes = {}
    if args.address is not None:
        changes["address"] = args.address
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.trials is not None:
        changes["budget"] = dataclasses.replace(config.budget, trials=args.trials)
    config = dataclasses.replace(config, **changes)
    try:
        summary = run_campaign(config, args.runs_dir, rerun_failed=args.rerun_failed)
    except KeyboardInterrupt:
        print(f"stopped; finished trials are stored in {RunDir(config, args.runs_dir).path}. "
              f"Resume: nas search -c {args.config}")
        return 130
    best = f"best reward {summary.best_reward:.4f} (trial {summary.best_trial})" if summary.best_trial is not None \
        else "no finished trials"
    print(f"campaign {config.name}: {summary.finished} finished, {summary.failed} failed, {summary.evaluated} "
          f"evaluated; {best}; {summary.wall_seconds:.0f} s")
    if summary.stopped_early:
        print("stopped at the wall-time budget; re-run to continue")
    if summary.comparison is not None:
        print(summary.comparison.describe())
    print(f"results in {summary.run_dir} (nas results / nas export / nas plot {summary.run_dir})")
    return 0


def configure_search(search: argparse.ArgumentParser) -> None:
    search.description = ("Run a search campaign from a YAML config. Re-running the same config resumes it: "
                          "finished trials are kept, interrupted ones are proposed again.")
    search.add_argument("-c", "--config", required=True, help="campaign YAML (see experiments/)")
    search.add_argument("--runs-dir", default="runs", help="parent of the run directory (default runs/)")
    search.add_argument("--address", default=None, help="join an existing Ray cluster (e.g. auto or host:6379)")
    search.add_argument("--workers", type=int, default=None, help="override the number of parallel trials")
    search.add_argument("--trials", type=int, default=None, help="override the trial budget")
    search.add_argument("--rerun-failed", action="store_true", help="evaluate failed trials' architectures again")
    search.set_defaults(handler=_search)
