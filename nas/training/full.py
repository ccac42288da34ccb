"""Full training of a spec with a recipe: standalone or data-parallel under ``msrun``.

Output directory layout (only rank 0 writes)::

    spec.yaml                      the spec trained (classes set from the data)
    recipe.yaml                    the resolved recipe
    train_log.csv                  epoch, loss, lr, top1, top5, images/s, seconds
    checkpoints/epoch_0003.ckpt    network + optimizer state + EMA, spec and epoch embedded
    model.ckpt                     final weights (EMA weights when EMA is on), spec embedded

``resume=True`` continues after the newest epoch checkpoint, with the optimizer state and the
LR schedule position restored.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mindspore as ms
import numpy as np
import yaml
from mindspore.communication import get_group_size, get_rank, init

from nas.models.builder import build_network
from nas.models.checkpoint import SPEC_KEY, CheckpointError, read_checkpoint, save_weights
from nas.spec.arch import ArchSpec
from nas.spec.errors import NasError
from nas.spec.yamlio import read_yaml_file
from nas.training.config import DataConfig
from nas.training.data import open_data
from nas.training.engine import Trainer, evaluate, set_execution_mode
from nas.training.recipe import Recipe

EPOCH_KEY = "train_epoch"
LOG_FIELDS = ("epoch", "loss", "lr", "top1", "top5", "images_per_s", "seconds")


@dataclass(frozen=True)
class TrainingOutcome:
    out_dir: Path
    epochs_run: int
    last_epoch: int
    top1: float
    top5: float
    rank: int
    group_size: int


def _set_device(device: str, mode: str) -> None:

    set_execution_mode(mode)
    try:
        ms.set_device(device)
    except (RuntimeError, ValueError) as error:
        raise NasError(f"device {device!r} is not available here: {str(error).splitlines()[0]}") from None


def _silent(line: str) -> None:
    """A log that says nothing (the ranks other than 0)."""


def _init_distributed() -> tuple[int, int]:

    try:
        init()
    except RuntimeError as error:
        raise NasError("--distribute needs a launcher such as msrun (msrun --worker_num N --local_worker_num N "
                       f"nas train ... --distribute): {str(error).splitlines()[0]}") from None
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    return rank, size


def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in (out_dir / "checkpoints").glob("epoch_*.ckpt"):
        match = re.fullmatch(r"epoch_(\d+)\.ckpt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _save_state(trainer: Any, path: Path, spec: ArchSpec, epoch: int) -> None:

    entries = [{"name": param.name, "data": param.data} for param in trainer.step_cell.get_parameters()]
    if trainer.ema is not None:
        entries += [{"name": shadow.name, "data": shadow.data} for shadow in trainer.ema.shadow]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.ckpt")
    ms.save_checkpoint(entries, str(partial), append_dict={SPEC_KEY: spec.to_yaml(), EPOCH_KEY: epoch})
    partial.replace(path)


def _restore_state(trainer: Any, path: Path, spec: ArchSpec) -> int:

    values = read_checkpoint(path)
    saved = values.get(SPEC_KEY)
    if not isinstance(saved, str) or ArchSpec.from_yaml(saved) != spec:
        raise CheckpointError(f"checkpoint {str(path)!r} was written for a different spec; refusing to resume")
    names = {param.name for param in trainer.step_cell.get_parameters()}
    missing = sorted(names - set(values))
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing[0]!r}; cannot resume")
    ms.load_param_into_net(trainer.step_cell, {name: values[name] for name in names}, strict_load=True)
    if trainer.ema is not None:
        for shadow in trainer.ema.shadow:
            if shadow.name not in values:
                raise CheckpointError(f"checkpoint {str(path)!r} holds no weight average {shadow.name!r}; "
                                      "it was written without EMA, so it cannot resume an EMA recipe")
            shadow.set_data(values[shadow.name].data if hasattr(values[shadow.name], "data") else values[shadow.name])
    return int(np.asarray(values[EPOCH_KEY].asnumpy() if hasattr(values[EPOCH_KEY], "asnumpy")
                          else values[EPOCH_KEY]).item())


def _check_same_recipe(path: Path, resolved: dict[str, Any]) -> None:
    """A resumed run continues the same schedule: the recipe must match the stored one."""
    if not path.is_file():
        raise NasError(f"--resume: {str(path)!r} is missing, so the run's recipe is unknown")
    stored = read_yaml_file(path, "recipe file") or {}
    for section in ("train", "data"):
        for key, value in resolved[section].items():
            if stored.get(section, {}).get(key) != value:
                raise NasError(f"--resume: the run used {section}.{key}={stored.get(section, {}).get(key)!r}, "
                               f"this recipe has {value!r}; resume with the same recipe")


def trainable_digest(net: Any) -> str:
    """SHA-256 of the trainable parameters: equal across data-parallel ranks after training."""
    digest = hashlib.sha256()
    for param in net.trainable_params():
        digest.update(param.name.encode())
        digest.update(np.ascontiguousarray(param.asnumpy()).tobytes())
    return digest.hexdigest()


def run_training(spec: ArchSpec, recipe: Recipe, data_source: str, out_dir: str | Path, *,
                 device: str | None = None, distribute: bool = False, resume: bool = False, seed: int | None = None,
                 rank_digests: bool = False, log: Callable[[str], None] = print) -> TrainingOutcome:
    """Train ``spec`` with ``recipe`` on ``data_source`` ('digits' or a directory)."""


    out = Path(out_dir)
    device = device or recipe.system.device
    config = recipe.train if seed is None else recipe.train.replace(seed=seed)
    # Bad data is reported before the device is touched.
    data = open_data(DataConfig(source=data_source, resolution=recipe.data.resolution, held_out=recipe.data.held_out,
                                seed=config.seed, augment=recipe.data.augment, workers=recipe.data.workers))
    _set_device(device, recipe.system.mode)
    rank, size = _init_distributed() if distribute else (0, 1)
    writer = rank == 0
    if not writer:  # under msrun every rank runs this: only rank 0 speaks, as only it writes
        log = _silent
    if device == "CPU" and config.amp_level != "O0":
        log(f"AMP {config.amp_level} is for accelerators; using O0 on the CPU")
        config = config.replace(amp_level="O0")
    if spec.num_classes != data.num_classes:
        log(f"the data has {data.num_classes} classes; the spec's classifier is set to match")
        spec = spec.replace(num_classes=data.num_classes)
    if spec.resolution != recipe.data.resolution:
        spec = spec.replace(resolution=recipe.data.resolution)
    ms.set_seed(config.seed)
    net = build_network(spec, seed=config.seed)
    shard = (size, rank) if size > 1 else None
    steps = data.steps_per_epoch(config.batch_size, shards=size)
    trainer = Trainer(net, config, steps, global_batch=config.batch_size * size)

    start_epoch = 0
    existing = _checkpoints(out)
    resolved = {"train": dataclasses.asdict(config), "data": dataclasses.asdict(recipe.data),
                "system": {**dataclasses.asdict(recipe.system), "device": device}}
    if resume:
        if not existing:
            raise CheckpointError(f"--resume: no checkpoints in {str(out / 'checkpoints')!r}")
        _check_same_recipe(out / "recipe.yaml", resolved)
        start_epoch = _restore_state(trainer, existing[-1][1], spec)
        if start_epoch >= trainer.epochs:  # nothing to train: report the stored result, write nothing
            stored = _last_logged(out / "train_log.csv")
            log(f"the run in {str(out)!r} is already complete ({trainer.epochs} epochs); nothing was written")
            return TrainingOutcome(out_dir=out, epochs_run=0, last_epoch=trainer.epochs, top1=stored[0],
                                   top5=stored[1], rank=rank, group_size=size)
        log(f"resuming after epoch {start_epoch} from {existing[-1][1]}")
    elif existing:  # every rank stops, so none waits for the others in the first all-reduce
        raise NasError(f"{str(out)!r} already holds checkpoints; pass --resume to continue or choose another -o")
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        (out / "spec.yaml").write_text(spec.to_yaml())
        (out / "recipe.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    log_path = out / "train_log.csv"
    validation = data.validation(max(64, config.batch_size))
    scores = {"top1": float("nan"), "top5": float("nan")}

    def on_epoch_end(entry: Any) -> None:
        if writer:
            result = evaluate(net, validation) if trainer.ema is None else _evaluate_ema(trainer, net, validation)
            scores.update(top1=result.top1, top5=result.top5)
            row = {"epoch": entry.epoch, "loss": round(entry.loss, 6), "lr": float(entry.lr),
                   "top1": round(result.top1, 6), "top5": round(result.top5, 6),
                   "images_per_s": round(entry.images_per_second * size, 2), "seconds": round(entry.seconds, 3)}
            new_file = not log_path.exists()
            with log_path.open("a", newline="") as handle:
                csv_writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
                if new_file:
                    csv_writer.writeheader()
                csv_writer.writerow(row)
            log(f"epoch {entry.epoch}/{trainer.epochs}  loss {entry.loss:.4f}  lr {entry.lr:.5f}  "
                f"top1 {result.top1:.4f}  top5 {result.top5:.4f}  {row['images_per_s']:.1f} img/s")
            _save_state(trainer, out / "checkpoints" / f"epoch_{entry.epoch:04d}.ckpt", spec, entry.epoch)
            for _, old in _checkpoints(out)[:-recipe.system.keep_checkpoints]:
                old.unlink()

    started = time.perf_counter()
    logs = trainer.fit(lambda epoch: data.train(config.batch_size, shard=shard, epoch=epoch),
                       start_epoch=start_epoch, on_epoch_end=on_epoch_end)
    if writer:
        if trainer.ema is not None:
            trainer.ema.swap()
        save_weights(net, out / "model.ckpt", spec)
        log(f"trained {len(logs)} epochs in {time.perf_counter() - started:.1f} s; weights in {out / 'model.ckpt'}")
    if rank_digests:
        folder = out / "digests"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "trainable": trainable_digest(net)}))
    return TrainingOutcome(out_dir=out, epochs_run=len(logs), last_epoch=trainer.epochs, top1=scores["top1"],
                           top5=scores["top5"], rank=rank, group_size=size)


def _last_logged(path: Path) -> tuple[float, float]:
    """(top1, top5) of the last epoch in a run's train_log.csv; NaN where the log has none."""
    if not path.is_file():
        return float("nan"), float("nan")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return float(rows[-1]["top1"]), float(rows[-1]["top5"])
    except (IndexError, KeyError, TypeError, ValueError):
        return float("nan"), float("nan")


def _evaluate_ema(trainer: Any, net: Any, dataset: Any) -> Any:

    trainer.ema.swap()
    try:
        return evaluate(net, dataset)
    finally:
        trainer.ema.swap()
