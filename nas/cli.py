"""The ``nas`` command. Thin: it parses arguments, calls the library and prints.

Bad input is reported as one line on stderr with exit code 2 (set ``NAS_DEBUG=1`` for the
traceback). Each command group lives in :mod:`nas.commands` and registers itself here.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from typing import Sequence

os.environ.setdefault("GLOG_v", "3")  # MindSpore logs noisily; set before it is imported

COMMAND_MODULES = ("spec", "importer", "space", "latency", "search", "train", "netadapt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Platform-aware neural architecture search on MindSpore.")
    from nas import __version__
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"nas.commands.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nas.errors import USER_ERRORS, one_line

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        code = 130
    except USER_ERRORS as error:
        if os.environ.get("NAS_DEBUG"):
            raise
        print(f"nas: error: {one_line(error)}", file=sys.stderr)
        code = 2
    del args
    gc.collect()  # free MindSpore cells before interpreter shutdown, which otherwise logs noise
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
