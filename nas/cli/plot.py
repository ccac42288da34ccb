"""``nas plot``: Pareto plots of a campaign and of NetAdapt runs, and the reward over trials."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.campaign.baselines import compare, front_of, read_baselines
from nas.campaign.config import default_storage
from nas.campaign.plots import PlotData, write_html, write_png, write_reward_plot
from nas.campaign.references import reference_points
from nas.campaign.results import trials_frame
from nas.campaign.study import open_study
from nas.spec.errors import NasError
from netadapt.history import load_trajectory


def _plot(args: argparse.Namespace) -> int:
    if args.run is None and not args.netadapt:
        raise NasError("give a campaign run directory and/or --netadapt DIR")
    trajectories = [load_trajectory(folder) for folder in args.netadapt or []]
    reward, points, title, baselines, comparison = None, [], "NetAdapt", [], None
    if args.run is not None:
        study, config = open_study(args.run)
        run_dir = Path(args.run)
        trials = study.get_trials(deepcopy=False)
        frame = trials_frame(trials)
        reward = config.reward
        baselines = read_baselines(config.storage or default_storage(run_dir), config.name)
        if baselines:
            comparison = compare(front_of(frame), baselines)
            print(comparison.describe())
        if args.with_references:
            points = reference_points(config, run_dir, trials, with_accuracy=True,
                                      log=lambda line: print(line, flush=True))
        title = f"{config.name}: {config.space.name} space, {config.controller.name} controller"
        out = Path(args.output or run_dir)
    else:
        frame = trials_frame([])
        out = Path(args.output or args.netadapt[0])
    out.mkdir(parents=True, exist_ok=True)
    data = PlotData(frame=frame, reward=reward, references=points, trajectories=trajectories, title=title,
                    baselines=baselines, comparison=comparison)
    written = [write_png(data, out / "pareto.png"), write_html(data, out / "pareto.html")]
    if args.run is not None:
        written.append(write_reward_plot(frame, out / "reward.png", title=f"{title}: reward over trials"))
    for path in written:
        print(f"wrote {path}")
    return 0


def configure_plot(plot: argparse.ArgumentParser) -> None:
    plot.add_argument("run", nargs="?", default=None, help="campaign run directory")
    plot.add_argument("--with-references", action="store_true",
                      help="also draw MobileNetV3-Small/-Large, MnasNet-A1 and MobileNetV2, each measured and "
                           "trained on the proxy task (once; kept in references.json). The campaign's own "
                           "baselines (its space's reference by width) are always drawn")
    plot.add_argument("--netadapt", action="append", metavar="DIR", help="a NetAdapt run to draw (repeatable)")
    plot.add_argument("-o", "--output", default=None, help="output directory (default: the run directory)")
    plot.set_defaults(handler=_plot)
