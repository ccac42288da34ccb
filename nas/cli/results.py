"""``nas results``: the trials table of a campaign."""
from __future__ import annotations

import argparse

from nas.campaign.results import format_frame, trials_frame, write_tables
from nas.campaign.study import open_study


def _results(args: argparse.Namespace) -> int:
    study, _ = open_study(args.run)
    frame = trials_frame(study.get_trials(deepcopy=False))
    print(format_frame(frame))
    csv_path, parquet_path = write_tables(frame, args.run)
    done = frame[frame["state"] == "COMPLETE"]
    print(f"\n{len(done)} finished, {int((frame['state'] == 'FAIL').sum())} failed, "
          f"{int(done['pareto'].sum())} on the Pareto front (accuracy up, latency down)")
    print(f"wrote {csv_path} and {parquet_path}")
    return 0


def configure_results(results: argparse.ArgumentParser) -> None:
    results.add_argument("run", help="run directory, e.g. runs/demo")
    results.set_defaults(handler=_results)
