"""The ``nas`` command. Thin: it parses arguments, calls the library and prints.

Each command lives in a module of :mod:`nas.cli` with a ``configure_<command>(parser)`` function
that adds its arguments and its handler. Only the module of the command being run is imported,
so ``nas --help`` and the light commands (``nas spec``, ``nas space``, ``nas results``) start
without loading MindSpore.

Bad input is reported as one line on stderr with exit code 2 (set ``NAS_DEBUG=1`` for the
traceback).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from typing import NoReturn, Sequence

from nas import __version__
from nas.spec.errors import USER_ERRORS, one_line

os.environ.setdefault("GLOG_v", "3")  # MindSpore logs noisily; set before anything imports it

# command -> (module of nas.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "spec": ("spec", "show, export and list architecture specs"),
    "import": ("importer", "import models from other zoos"),
    "space": ("space", "search spaces: show them, sample, decode and encode points"),
    "latency": ("latency", "measure latency, build and check look-up tables"),
    "search": ("search", "run (or resume) a search campaign"),
    "results": ("results", "print the trials table; write trials.csv and .parquet"),
    "export": ("export", "write searched specs (with provenance) as YAML"),
    "plot": ("plot", "Pareto plots (PNG + interactive HTML) and reward over trials"),
    "dashboard": ("dashboard", "serve optuna-dashboard on a campaign's study"),
    "train": ("train", "train a spec with a recipe (standalone, or data-parallel under msrun)"),
    "validate": ("train", "top-1 / top-5 of a checkpoint on a dataset"),
    "export-model": ("train", "export trained weights for deployment (MINDIR, ...)"),
    "netadapt": ("netadapt", "prune a trained network layer by layer to a measured latency budget (NetAdapt)"),
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error reported like every other bad input: one line, exit code 2
    (the usage itself is what ``--help`` prints). Sub-commands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser: every command is listed; the one named in ``argv`` gets its arguments."""
    parser = _Parser(prog="nas", description="Platform-aware neural architecture search on MindSpore.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    chosen = _command_of(argv)
    for name, (module, text) in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if name == chosen:  # only the command being run loads its module (and what it imports)
            configure = getattr(importlib.import_module(f"nas.cli.{module}"), f"configure_{name.replace('-', '_')}")
            configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(words)
        args = parser.parse_args(words)
        code = args.handler(args)
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        code = 130
    except USER_ERRORS as error:
        if os.environ.get("NAS_DEBUG"):
            raise
        print(f"nas: error: {one_line(error)}", file=sys.stderr)
        code = 2
    gc.collect()  # free MindSpore cells before interpreter shutdown, which otherwise logs noise
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
