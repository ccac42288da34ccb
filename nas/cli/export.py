"""``nas export``: searched specs as YAML files with their provenance."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.campaign.export import select_trials, write_export
from nas.campaign.study import open_study
from nas.spec.errors import NasError


def _export(args: argparse.Namespace) -> int:
    if not (args.best or args.pareto or args.trial):
        raise NasError("choose what to export: --best, --pareto or --trial N")
    study, config = open_study(args.run)
    out = Path(args.output or Path(args.run) / "exports")
    for trial in select_trials(study, best=args.best, pareto=args.pareto, trials=args.trial or []):
        path = write_export(config, trial, out)
        print(f"trial {trial.number}: reward {trial.user_attrs['reward']:.4f}  accuracy "
              f"{trial.user_attrs['accuracy']:.4f}  latency {trial.user_attrs['latency_ms']:.3f} ms -> {path}")
    return 0


def configure_export(export: argparse.ArgumentParser) -> None:
    export.add_argument("run", help="run directory, e.g. runs/demo")
    export.add_argument("--best", action="store_true", help="the trial with the highest reward")
    export.add_argument("--pareto", action="store_true", help="every trial on the accuracy/latency front")
    export.add_argument("--trial", type=int, action="append", help="a trial number (repeatable)")
    export.add_argument("-o", "--output", default=None, help="output directory (default <run>/exports)")
    export.set_defaults(handler=_export)
