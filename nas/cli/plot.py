"""``nas plot``: Pareto plots of a campaign and of NetAdapt runs, and the reward over trials."""
from __future__ import annotations

import argparse
from pathlib import Path

from latency.errors import StampMismatchError
from latency.stamp import DeviceStamp
from nas.campaign.baselines import compare, front_of, read_baselines
from nas.campaign.config import default_storage
from nas.campaign.plots import PlotData, write_html, write_png, write_reward_plot
from nas.campaign.references import reference_points
from nas.campaign.results import trials_frame
from nas.campaign.study import open_study
from nas.spec.errors import NasError
from netadapt.history import load_trajectory


def axis_stamp(sources: dict[str, list[DeviceStamp]]) -> str:
    """The one stamp every latency to be drawn was measured under, briefly ('' when none is known).
    ``sources`` maps a description of each source (a campaign, a NetAdapt run) to its stamps;
    latencies of two stamps (threads, runtime, resolution, machine) are not comparable, so drawing
    them on one axis is refused, naming both."""
    seen: dict[str, tuple[str, DeviceStamp]] = {}
    for source, stamps in sources.items():
        for stamp in stamps:
            seen.setdefault(stamp.key, (source, stamp))
    if len(seen) > 1:
        (first, one), (second, other) = list(seen.values())[:2]
        raise StampMismatchError(f"the plot would mix latencies measured under two stamps: {first} under "
                                 f"[{one.brief()}] and {second} under [{other.brief()}]; plot them separately")
    return next(iter(seen.values()))[1].brief() if seen else ""


def _trial_stamps(trials: list) -> list[DeviceStamp]:
    stamps = []
    for trial in trials:
        stored = trial.user_attrs.get("latency_stamp")
        if isinstance(stored, dict):
            try:
                stamps.append(DeviceStamp.from_dict(stored))
            except (TypeError, ValueError):  # a stamp of an older format: not comparable, not drawn as one
                continue
    return stamps


def _plot(args: argparse.Namespace) -> int:
    if args.run is None and not args.netadapt:
        raise NasError("give a campaign run directory and/or --netadapt DIR")
    trajectories = [load_trajectory(folder) for folder in args.netadapt or []]
    sources = {f"NetAdapt run {folder!r}": [t.stamp] for folder, t in zip(args.netadapt or [], trajectories)
               if t.stamp is not None}
    reward, points, title, baselines, comparison = None, [], "NetAdapt", [], None
    if args.run is not None:
        study, config = open_study(args.run)
        run_dir = Path(args.run)
        trials = study.get_trials(deepcopy=False)
        sources[f"campaign {str(run_dir)!r}"] = _trial_stamps(trials)
        stamp = axis_stamp(sources)  # before anything is measured or written
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
        stamp = axis_stamp(sources)
    out.mkdir(parents=True, exist_ok=True)
    data = PlotData(frame=frame, reward=reward, references=points, trajectories=trajectories, title=title,
                    baselines=baselines, comparison=comparison, stamp=stamp)
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
