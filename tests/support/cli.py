"""Run the ``nas`` command as a user would: a fresh interpreter, ``python -m nas.cli``."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: How many independent ``nas`` processes ``run_nas_each`` runs at once. Each spends most of its
#: time importing MindSpore, so a few at once keep two cores busy.
PARALLEL = 4


def run_nas(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, GLOG_v="3")
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def run_nas_each(calls: Sequence[Sequence[str]], cwd: Path | None = None) -> list[subprocess.CompletedProcess]:
    """Run independent ``nas`` calls concurrently; the results come back in the order asked."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda args: run_nas(*args, cwd=cwd), calls))
