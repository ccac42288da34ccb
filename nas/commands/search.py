"""``nas search``, ``nas results``, ``nas export`` and ``nas plot``."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

REFERENCE_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large", "mnasnet_a1", "mobilenet_v2")


def _search(args: argparse.Namespace) -> int:
    from nas.campaign import Campaign
    from nas.campaign_config import load_config

    config = load_config(args.config)
    changes = {}
    if args.address is not None:
        changes["address"] = args.address
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.trials is not None:
        changes["budget"] = dataclasses.replace(config.budget, trials=args.trials)
    config = dataclasses.replace(config, **changes)
    campaign = Campaign(config, args.runs_dir)
    try:
        summary = campaign.run(rerun_failed=args.rerun_failed)
    except KeyboardInterrupt:
        print(f"stopped; finished trials are stored in {campaign.run_dir}. Resume: nas search -c {args.config}")
        return 130
    best = f"best reward {summary.best_reward:.4f} (trial {summary.best_trial})" if summary.best_trial is not None \
        else "no finished trials"
    print(f"campaign {config.name}: {summary.finished} finished, {summary.failed} failed, {summary.evaluated} "
          f"evaluated; {best}; {summary.wall_seconds:.0f} s")
    if summary.stopped_early:
        print("stopped at the wall-time budget; re-run to continue")
    print(f"results in {summary.run_dir} (nas results / nas export / nas plot {summary.run_dir})")
    return 0


def _results(args: argparse.Namespace) -> int:
    from nas.export import open_study
    from nas.results import format_frame, trials_frame, write_tables

    study, config = open_study(args.run)
    frame = trials_frame(study.get_trials(deepcopy=False))
    print(format_frame(frame))
    csv_path, parquet_path = write_tables(frame, args.run)
    done = frame[frame["state"] == "COMPLETE"]
    print(f"\n{len(done)} finished, {int((frame['state'] == 'FAIL').sum())} failed, "
          f"{int(done['pareto'].sum())} on the Pareto front (accuracy up, latency down)")
    print(f"wrote {csv_path} and {parquet_path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from nas.errors import NasError
    from nas.export import open_study, select_trials, write_export

    if not (args.best or args.pareto or args.trial):
        raise NasError("choose what to export: --best, --pareto or --trial N")
    study, config = open_study(args.run)
    out = Path(args.output or Path(args.run) / "exports")
    for trial in select_trials(study, best=args.best, pareto=args.pareto, trials=args.trial or []):
        path = write_export(config, trial, out)
        print(f"trial {trial.number}: reward {trial.user_attrs['reward']:.4f}  accuracy "
              f"{trial.user_attrs['accuracy']:.4f}  latency {trial.user_attrs['latency_ms']:.3f} ms -> {path}")
    return 0


def _reference_points(config, run_dir: Path, study, with_accuracy: bool, log) -> list:
    """Reference models at the campaign's measured latency (and proxy accuracy, if asked)."""
    from nas.campaign import dataset_classes
    from nas.evaluate import evaluate_candidate, measure_latency
    from nas.plots import ReferencePoint
    from nas.spec import ArchSpec
    from search_spaces import references

    cache_path = run_dir / "references.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    stored = next((t.user_attrs["spec_yaml"] for t in study.get_trials(deepcopy=False) if "spec_yaml" in t.user_attrs),
                  None)  # the classes of the proxy task, without opening the dataset
    classes = ArchSpec.from_yaml(stored).num_classes if stored else dataset_classes(config)
    points = []
    for name in REFERENCE_MODELS:
        spec = references.get(name).replace(num_classes=classes, resolution=config.evaluator.resolution)
        entry = cache.get(spec.arch_id, {})
        if "latency_ms" not in entry:
            log(f"measuring {name} ...")
            entry.update(measure_latency(spec, config.latency, config.measure_resolution()))
        if with_accuracy and "accuracy" not in entry:
            log(f"training {name} on the proxy task ...")
            entry.update(evaluate_candidate(spec.to_yaml(), dataclasses.asdict(config.evaluator),
                                            dataclasses.asdict(config.latency), config.seed))
        cache[spec.arch_id] = entry
        cache_path.write_text(json.dumps(cache, indent=1))
        points.append(ReferencePoint(name, entry["latency_ms"], entry.get("accuracy")))
    return points


def _plot(args: argparse.Namespace) -> int:
    from nas.errors import NasError
    from nas.plots import PlotData, RewardShape, write_html, write_png, write_reward_plot

    if args.run is None and not args.netadapt:
        raise NasError("give a campaign run directory and/or --netadapt DIR")
    log = lambda line: print(line, flush=True)  # noqa: E731
    trajectories = []
    for folder in args.netadapt or []:
        from nas.plots import load_trajectory

        trajectories.append(load_trajectory(folder))
    if args.run is not None:
        from nas.export import open_study
        from nas.results import trials_frame

        study, config = open_study(args.run)
        run_dir = Path(args.run)
        frame = trials_frame(study.get_trials(deepcopy=False))
        reward = RewardShape(config.reward.kind, config.reward.target_ms, config.reward.w, config.reward.alpha,
                             config.reward.beta)
        points = [] if args.no_references else _reference_points(config, run_dir, study, args.with_references, log)
        title = f"{config.name}: {config.space.name} space, {config.controller.name} controller"
        out = Path(args.output or run_dir)
    else:
        from nas.results import trials_frame

        frame = trials_frame([])
        reward, points, title = None, [], "NetAdapt"
        out = Path(args.output or args.netadapt[0])
    out.mkdir(parents=True, exist_ok=True)
    data = PlotData(frame=frame, reward=reward, references=points, trajectories=trajectories, title=title)
    written = [write_png(data, out / "pareto.png"), write_html(data, out / "pareto.html")]
    if args.run is not None:
        written.append(write_reward_plot(frame, out / "reward.png", title=f"{title}: reward over trials"))
    for path in written:
        print(f"wrote {path}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser(
        "search", help="run (or resume) a search campaign",
        description="Run a search campaign from a YAML config. Re-running the same config resumes it: "
                    "finished trials are kept, interrupted ones are proposed again.")
    search.add_argument("-c", "--config", required=True, help="campaign YAML (see experiments/)")
    search.add_argument("--runs-dir", default="runs", help="parent of the run directory (default runs/)")
    search.add_argument("--address", default=None, help="join an existing Ray cluster (e.g. auto or host:6379)")
    search.add_argument("--workers", type=int, default=None, help="override the number of parallel trials")
    search.add_argument("--trials", type=int, default=None, help="override the trial budget")
    search.add_argument("--rerun-failed", action="store_true", help="evaluate failed trials' architectures again")
    search.set_defaults(handler=_search)

    results = commands.add_parser("results", help="print the trials table; write trials.csv and .parquet")
    results.add_argument("run", help="run directory, e.g. runs/demo")
    results.set_defaults(handler=_results)

    export = commands.add_parser("export", help="write searched specs (with provenance) as YAML")
    export.add_argument("run", help="run directory, e.g. runs/demo")
    export.add_argument("--best", action="store_true", help="the trial with the highest reward")
    export.add_argument("--pareto", action="store_true", help="every trial on the accuracy/latency front")
    export.add_argument("--trial", type=int, action="append", help="a trial number (repeatable)")
    export.add_argument("-o", "--output", default=None, help="output directory (default <run>/exports)")
    export.set_defaults(handler=_export)

    plot = commands.add_parser("plot", help="Pareto plots (PNG + interactive HTML) and reward over trials")
    plot.add_argument("run", nargs="?", default=None, help="campaign run directory")
    plot.add_argument("--with-references", action="store_true",
                      help="also train the reference models on the proxy task to place them by accuracy")
    plot.add_argument("--no-references", action="store_true", help="leave the reference models out")
    plot.add_argument("--netadapt", action="append", metavar="DIR", help="a NetAdapt run to draw (repeatable)")
    plot.add_argument("-o", "--output", default=None, help="output directory (default: the run directory)")
    plot.set_defaults(handler=_plot)
