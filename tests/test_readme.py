"""The README runs as written: every Python block executes on its own, and the shell blocks,
walked top to bottom in a fresh directory, chain (each file is made before a command uses it)
and exit 0. The walk shrinks sizes (trials, epochs, samples, iterations) with the substitutions
in :data:`SMALL`; commands that need what this machine lacks are listed in :data:`SKIPPED`, with
why. A README command in neither list fails the test, so new commands get walked too."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Commands the walk does not run (matched by prefix), and why.
SKIPPED = {
    "make demo": "the set-up command itself (tests/campaign runs the demo's campaign at small settings)",
    "make test": "the set-up command itself: CI runs it",
    "apt-get install": "needs root and the network; .ci/run installs the dataset",
    "nas dashboard": "a server that runs until stopped",
    "msrun --bind_core": "needs Ascend cards and ImageNet (tests/training runs msrun on the CPU)",
    "nas validate --ckpt mindcv.ckpt": "needs ImageNet (tests/training validates a MindCV checkpoint on digits)",
}

# (pattern, replacement) applied to every command in order: the same command at small sizes.
SMALL = (
    (r"-c experiments/demo\.yaml", "-c small_demo.yaml"),
    (r"--recipe experiments/recipes/digits_cpu\.yaml", "--recipe small_recipe.yaml"),
    (r"--samples 3 --calibrate 3 --out (\S+)", r"--samples 1 --calibrate 3 --out \1 --max-seconds 1 --tolerance 0.5"),
    (r"(check --lut \S+) --samples 3", r"\1 --samples 2 --max-seconds 2"),
    (r"--samples 20", "--samples 6 --netadapt 4 --rounds 0 --max-seconds 2"),
    (r"--budget-ratio 0\.5", "--budget-ratio 0.9 --schedule fixed --fixed-ratio 0.1 --targets head "
                             "--short-term-steps 2 --long-term-epochs 0 --max-iters 1 --workers 1 --lut-calibration 0 "
                             "--latency-repeats 1"),
    (r"--max-iters 20", "--max-iters 2"),
    (r"--config experiments/netadapt/demo\.yaml", "--config experiments/netadapt/demo.yaml --budget-ratio 0.9 "
                                                   "--schedule fixed --fixed-ratio 0.1 --targets head "
                                                   "--short-term-steps 2 --long-term-epochs 0 --max-iters 1 "
                                                   "--workers 1 --lut-calibration 0 --latency-repeats 1"),
)


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def commands() -> list[str]:
    """Every shell command of the README, continuation lines joined, comments dropped."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(shlex.join(words))
    return found


def small(command: str) -> str:
    for pattern, replacement in SMALL:
        command = re.sub(pattern, replacement, command)
    return command


def test_every_readme_command_is_walked_or_skipped_for_a_reason() -> None:
    listed = commands()
    assert len(listed) >= 30
    unused = [prefix for prefix in SKIPPED if not any(c.startswith(prefix) for c in listed)]
    assert not unused, f"SKIPPED names commands the README no longer has: {unused}"
    unmatched = [p for p, _ in SMALL if not any(re.search(p, c) for c in listed)]
    assert not unmatched, f"SMALL patterns that match no README command: {unmatched}"


@pytest.fixture
def readme_dir(tmp_path, monkeypatch) -> Path:
    """A fresh directory with the repository's experiments/, its own cache and locks."""
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_block_runs_on_its_own(readme_dir: Path, index: int) -> None:
    code = blocks("python")[index]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=readme_dir,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=900)
    assert result.returncode == 0, f"block {index}:\n{code}\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_readme_shell_blocks_run_top_to_bottom(readme_dir: Path) -> None:
    demo = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    demo.update(budget={"trials": 2}, baselines={"widths": [0.35, 0.5]}, workers=1)
    demo["evaluator"]["train"]["epochs"] = 1
    demo["evaluator"]["subset"] = 400  # of digits' 1,437 training images
    demo["latency"]["max_seconds"] = 3
    (readme_dir / "small_demo.yaml").write_text(yaml.safe_dump(demo))
    recipe = yaml.safe_load((ROOT / "experiments" / "recipes" / "digits_cpu.yaml").read_text())
    recipe["train"]["epochs"] = 1
    (readme_dir / "small_recipe.yaml").write_text(yaml.safe_dump(recipe))
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), PYTHONPATH=str(ROOT))
    walked = []
    for command in commands():
        if any(command.startswith(prefix) for prefix in SKIPPED):
            continue
        run = small(command)
        started = time.monotonic()
        result = subprocess.run(shlex.split(run), capture_output=True, text=True, cwd=readme_dir, env=env,
                                timeout=900)
        walked.append(f"{time.monotonic() - started:6.1f} s  exit {result.returncode}  {command}")
        if command.startswith("nas netadapt") and result.returncode == 1:
            # An honest outcome at these sizes: one small step need not be measurably faster.
            assert "not faster than the seed" in result.stderr, result.stderr[-3000:]
            continue
        assert result.returncode == 0, "\n".join(walked) + f"\n{run}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    print("\n".join(walked))
