"""``nas train`` / ``validate`` / ``export-model`` end to end on digits, on the CPU."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from nas.models.builder import build_network
from nas.models.checkpoint import save_weights
from nas.training.deploy import load_trained
from nas.training.recipe import load_recipe
from search_spaces import references
from tests.support.cli import run_nas, run_nas_each

RECIPES = sorted((Path(__file__).resolve().parents[2] / "experiments" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_parses(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.train.epochs >= 1 and recipe.data.resolution >= 32
    if "ascend" in path.stem:
        assert recipe.system.device == "Ascend" and recipe.train.batch_size == 75 and recipe.train.amp_level == "O2"
        assert recipe.data.resolution == 224 and recipe.system.mode == "graph"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    spec = references.get("mobilenet_v3_small", 0.5).replace(resolution=32, name="v3s_half")
    (root / "spec.yaml").write_text(spec.to_yaml())
    recipe = yaml.safe_load((Path(__file__).resolve().parents[2] / "experiments/recipes/digits_cpu.yaml").read_text())
    recipe["train"]["epochs"] = 8
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    short = dict(recipe, train=dict(recipe["train"], epochs=3))
    (root / "short.yaml").write_text(yaml.safe_dump(short))
    return root


def _log(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    result = run_nas("train", "--spec", str(workdir / "spec.yaml"), "--recipe", str(workdir / "recipe.yaml"),
                     "--data", "digits", "-o", str(workdir / "single"))
    assert result.returncode == 0, result.stderr[-2000:]
    return workdir / "single"


@pytest.mark.slow
def test_training_reaches_90_percent_on_held_out_digits(trained) -> None:
    rows = _log(trained / "train_log.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert float(rows[-1]["top1"]) >= 0.90
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert (trained / "model.ckpt").is_file() and len(list((trained / "checkpoints").glob("*.ckpt"))) == 3


@pytest.mark.slow
def test_validate_reports_the_trained_accuracy(trained) -> None:
    result = run_nas("validate", "--ckpt", str(trained / "model.ckpt"), "--data", "digits", "--resolution", "32")
    assert result.returncode == 0, result.stderr
    top1 = float(result.stdout.split("top1 ")[1].split()[0])
    assert abs(top1 - float(_log(trained / "train_log.csv")[-1]["top1"])) < 1e-4  # printed to 4 places


@pytest.mark.slow
def test_resume_continues_at_the_next_epoch_with_the_same_schedule(workdir) -> None:
    full, cut = workdir / "full", workdir / "cut"
    args = ["--spec", str(workdir / "spec.yaml"), "--recipe", str(workdir / "short.yaml"), "--data", "digits"]
    assert run_nas("train", *args, "-o", str(full)).returncode == 0
    shutil.copytree(full, cut)
    for path in (cut / "checkpoints").glob("epoch_000[23].ckpt"):
        path.unlink()
    rows = _log(cut / "train_log.csv")
    with (cut / "train_log.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(rows[0])
    result = run_nas("train", *args, "-o", str(cut), "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming after epoch 1" in result.stdout
    resumed, uninterrupted = _log(cut / "train_log.csv"), _log(full / "train_log.csv")
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    assert [r["lr"] for r in resumed] == [r["lr"] for r in uninterrupted]  # read from the optimizer's step
    # The weights and optimizer state came back: epoch 2 picks up where epoch 1 ended (a fresh start
    # would be back near ln(10) = 2.3). Dropout's random stream is not restored, so not bit-equal.
    for mine, theirs in zip(resumed[1:], uninterrupted[1:]):
        assert float(mine["loss"]) == pytest.approx(float(theirs["loss"]), rel=0.15)
    assert float(resumed[1]["loss"]) < 0.85 * float(uninterrupted[0]["loss"])

    # A finished run resumed again: it says so, shows the stored result and writes nothing.
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in full.rglob("*") if path.is_file()}
    again = run_nas("train", *args, "-o", str(full), "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already complete" in again.stdout and "nan" not in again.stdout
    assert f"top1 {float(uninterrupted[-1]['top1']):.4f}" in again.stdout
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in full.rglob("*") if path.is_file()} == before


@pytest.mark.slow
def test_msrun_two_workers_end_with_identical_weights(workdir) -> None:
    venv_bin = str(Path(sys.executable).parent)
    env = {key: value for key, value in os.environ.items() if key != "GLOG_v"}  # as a user starts it
    env["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    out = workdir / "dist"
    command = ["msrun", "--worker_num", "2", "--local_worker_num", "2", "--master_port", "8231",
               "--log_dir", str(out / "msrun_logs"), "--join", "True", shutil.which("nas", path=env["PATH"]),
               "train", "--spec", str(workdir / "spec.yaml"), "--recipe", str(workdir / "recipe.yaml"),
               "--data", "digits", "-o", str(out), "--distribute", "--rank-digests"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The console (msrun --join copies every rank's log there) has no MindSpore INFO lines and
    # each line of ours once: only rank 0 speaks.
    console = result.stdout + result.stderr
    assert "[INFO]" not in console, console[-3000:]
    assert console.count("epoch 1/") == 1 and console.count("done: top1") == 1, console[-3000:]
    digests = [json.loads((out / "digests" / f"rank{rank}.json").read_text())["trainable"] for rank in (0, 1)]
    assert digests[0] == digests[1]
    rows = _log(out / "train_log.csv")
    assert len(rows) == 8 and float(rows[-1]["top1"]) >= 0.90


@pytest.mark.slow
def test_mindir_export_gives_the_same_logits(trained, tmp_path) -> None:
    import mindspore as ms
    from mindspore import nn

    result = run_nas("export-model", "--ckpt", str(trained / "model.ckpt"), "--format", "MINDIR",
                     "-o", str(tmp_path / "v3s.mindir"))
    assert result.returncode == 0, result.stderr
    graph = nn.GraphCell(ms.load(str(tmp_path / "v3s.mindir")))
    _, net = load_trained(None, trained / "model.ckpt")
    net.set_train(False)
    x = ms.Tensor(np.random.RandomState(0).randn(1, 3, 32, 32).astype(np.float32))
    np.testing.assert_allclose(graph(x).asnumpy(), net(x).asnumpy(), atol=1e-4)


@pytest.mark.slow
def test_validate_accepts_a_mindcv_checkpoint(tmp_path) -> None:
    import mindcv
    import mindspore as ms

    ms.save_checkpoint(mindcv.create_model("mobilenet_v3_small_075", num_classes=10), str(tmp_path / "m.ckpt"))
    result = run_nas("validate", "--ckpt", str(tmp_path / "m.ckpt"), "--mindcv", "mobilenet_v3_small_075",
                     "--data", "digits", "--resolution", "32")
    assert result.returncode == 0, result.stderr
    assert "top1" in result.stdout and "images 360" in result.stdout


def test_bad_input_is_one_line_exit_2(workdir, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 2\n  learning_rate: 0.1\n")
    spec = str(workdir / "spec.yaml")
    cases = [
        (["train", "--spec", spec, "--recipe", str(bad), "--data", "digits"], "train.learning_rate: unknown key"),
        (["train", "--spec", spec, "--recipe", str(workdir / "short.yaml"), "--data", str(tmp_path / "none")],
         "dataset directory"),
        (["train", "--spec", spec, "--recipe", str(tmp_path / "missing.yaml"), "--data", "digits"], "not found"),
    ]
    other = references.get("mobilenet_v3_small", 0.75).replace(resolution=32, num_classes=10)
    save_weights(build_network(other), tmp_path / "other.ckpt")
    cases.append((["validate", "--spec", spec, "--ckpt", str(tmp_path / "other.ckpt"), "--data", "digits"],
                  "does not match the spec"))
    cases.append((["export-model", "--spec", spec, "--ckpt", str(tmp_path / "other.ckpt")], "does not match the spec"))
    cases.append((["export-model", "--ckpt", str(tmp_path / "other.ckpt"), "--format", "PNG"], "--format"))
    results = run_nas_each([args for args, _ in cases], cwd=tmp_path)
    for (args, message), result in zip(cases, results, strict=True):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr[-500:])
