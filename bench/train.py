"""Training benchmark.

1. Training images/s of our MobileNetV3-Small against MindCV's mobilenet_v3_small_100 through the
   same training engine and data pipeline (digits resized), alternating rounds in one process.
2. ``nas train`` on digits: 2-worker ``msrun`` data parallel against a single process.

    python -m bench.train [--resolution 224] [--batch 32] [--steps 8] [--rounds 3] [--epochs 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import write_report
from nas.models.builder import build_network
from nas.training.config import DataConfig, TrainConfig
from nas.training.data import open_data
from nas.training.engine import Trainer, set_execution_mode
from search_spaces import references


def _engine_throughput(args: argparse.Namespace) -> dict:
    import mindcv  # optional (the dev extra): only the engine comparison needs it

    set_execution_mode("graph")
    data = open_data(DataConfig("digits", resolution=args.resolution))
    config = TrainConfig(epochs=1, batch_size=args.batch, lr=0.05, base_batch=args.batch)
    nets = {"ours": build_network(references.get("mobilenet_v3_small"), num_classes=10, seed=0),
            "mindcv": mindcv.create_model("mobilenet_v3_small_100", num_classes=10)}
    trainers = {name: Trainer(net, config, steps_per_epoch=1000) for name, net in nets.items()}
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for name, trainer in trainers.items():  # compile and warm up
        trainer.run_steps(data.train(args.batch, epoch=0).create_tuple_iterator(num_epochs=1), 3)
    for round_index in range(args.rounds):
        for name, trainer in trainers.items():
            batches = data.train(args.batch, epoch=round_index + 1).create_tuple_iterator(num_epochs=1)
            started = time.perf_counter()
            _, steps, images = trainer.run_steps(batches, args.steps)
            rates[name].append(images / (time.perf_counter() - started))
        print(f"round {round_index + 1}: ours {rates['ours'][-1]:.1f} img/s, MindCV {rates['mindcv'][-1]:.1f} img/s")
    ours, theirs = statistics.median(rates["ours"]), statistics.median(rates["mindcv"])
    print(f"engine throughput at {args.resolution} px, batch {args.batch}: ours {ours:.1f} img/s, "
          f"MindCV {theirs:.1f} img/s, ratio {ours / theirs:.3f} (target >= 0.95)")
    return {"ours_images_per_s": ours, "mindcv_images_per_s": theirs, "ratio": ours / theirs, "per_round": rates}


def _epoch_rates(log: Path) -> list[float]:
    with log.open() as handle:
        rows = list(csv.DictReader(handle))
    return [float(row["images_per_s"]) for row in rows[1:]] or [float(rows[0]["images_per_s"])]


def _nas_train(args: argparse.Namespace, workdir: Path, distribute: bool) -> dict:
    env = dict(os.environ, GLOG_v="3", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    nas = shutil.which("nas", path=env["PATH"])
    out = workdir / ("msrun2" if distribute else "single")
    command = [nas, "train", "--spec", str(workdir / "spec.yaml"), "--recipe", str(workdir / "recipe.yaml"),
               "--data", "digits", "-o", str(out)]
    if distribute:
        command = ["msrun", "--worker_num", "2", "--local_worker_num", "2", "--master_port", "8317", "--join", "True",
                   "--log_dir", str(out / "logs"), *command, "--distribute"]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=3600)
    wall = time.perf_counter() - started
    rates = _epoch_rates(out / "train_log.csv")
    return {"wall_s": wall, "images_per_s": statistics.median(rates), "epoch_rates": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the msrun comparison")
    args = parser.parse_args()
    figures: dict = {"args": vars(args), "engine": _engine_throughput(args)}

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        spec = references.get("mobilenet_v3_small", 0.75).replace(resolution=32)
        (workdir / "spec.yaml").write_text(spec.to_yaml())
        recipe_path = Path(__file__).resolve().parents[1] / "experiments/recipes/digits_cpu.yaml"
        recipe = yaml.safe_load(recipe_path.read_text())
        recipe["train"]["epochs"] = args.epochs
        (workdir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        single = _nas_train(args, workdir, distribute=False)
        dual = _nas_train(args, workdir, distribute=True)
    figures["msrun"] = {"single": single, "two_workers": dual,
                        "throughput_ratio": dual["images_per_s"] / single["images_per_s"],
                        "wall_ratio": dual["wall_s"] / single["wall_s"]}
    print(f"nas train on digits ({args.epochs} epochs, 32 px): single {single['images_per_s']:.1f} img/s "
          f"({single['wall_s']:.1f} s wall), msrun x2 {dual['images_per_s']:.1f} img/s ({dual['wall_s']:.1f} s wall); "
          f"throughput ratio {figures['msrun']['throughput_ratio']:.2f}")
    write_report("train", figures)


if __name__ == "__main__":
    main()
