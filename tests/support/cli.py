"""Run the ``nas`` command as a user would (a fresh interpreter, ``python -m nas.cli``), or through
``nas.cli.main`` in the test process."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_nas(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="3")
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def run_nas_here(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``nas ARGS`` through :func:`nas.cli.main` in this process: the same parser, handlers and
    one-line errors as the command, without a new interpreter's seconds of imports."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
    return subprocess.CompletedProcess(["nas", *args], code, out.getvalue(), err.getvalue())


def run_nas_each(calls: Sequence[Sequence[str]], cwd: Path | None = None) -> list[subprocess.CompletedProcess]:
    """Run independent ``nas`` calls, results in the order asked: the first as a user would (a
    fresh interpreter), the rest in this process, which checks the same code paths in a fraction
    of the time."""
    if not calls:
        return []
    return [run_nas(*calls[0], cwd=cwd)] + [run_nas_here(*args, cwd=cwd) for args in calls[1:]]
