"""``nas results``: the trials table of a campaign, its baselines, and the front against them."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nas.campaign.baselines import compare, front_of, read_baselines
from nas.campaign.config import default_storage
from nas.campaign.results import format_frame, trials_frame, write_tables
from nas.campaign.study import open_study


def _results(args: argparse.Namespace) -> int:
    study, config = open_study(args.run)
    frame = trials_frame(study.get_trials(deepcopy=False))
    print(format_frame(frame))
    csv_path, parquet_path = write_tables(frame, args.run)
    done = frame[frame["state"] == "COMPLETE"]
    print(f"\n{len(done)} finished, {int((frame['state'] == 'FAIL').sum())} failed, "
          f"{int(done['pareto'].sum())} on the Pareto front (accuracy up, latency down)")
    baselines = read_baselines(config.storage or default_storage(args.run), config.name)
    if baselines:
        table = pd.DataFrame([{"width": p.width, "arch_id": p.arch_id, "accuracy": p.accuracy,
                               "latency_ms": p.latency_ms, "reward": p.reward} for p in baselines])
        with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
            print(f"\nbaselines (the {config.space.name} space's reference by width, same proxy and latency "
                  f"protocol):\n{table.to_string(index=False)}")
        print(compare(front_of(frame), baselines).describe())
        table.to_csv(Path(args.run) / "baselines.csv", index=False)
    elif config.baselines.widths:
        print("\nno baselines finished yet (they are evaluated when the campaign runs)")
    print(f"wrote {csv_path} and {parquet_path}")
    return 0


def configure_results(results: argparse.ArgumentParser) -> None:
    results.add_argument("run", help="run directory, e.g. runs/demo")
    results.set_defaults(handler=_results)
