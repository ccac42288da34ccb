"""``nas train``, ``nas validate`` and ``nas export-model``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nas.spec.arch import ArchSpec
from nas.training.deploy import export_model, validate
from nas.training.full import run_training
from nas.training.recipe import load_recipe


def _load_spec(path: str | None) -> ArchSpec | None:
    return ArchSpec.from_yaml(Path(path)) if path else None


def _train(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    spec = _load_spec(args.spec)
    assert spec is not None  # --spec is required
    out = Path(args.output or Path("runs") / "train" / spec.name)
    outcome = run_training(spec, recipe, args.data, out, device=args.device, distribute=args.distribute,
                           resume=args.resume, seed=args.seed, rank_digests=args.rank_digests,
                           log=lambda line: print(line, flush=True))
    if outcome.rank == 0 and outcome.epochs_run == 0:
        stored = "no stored result" if outcome.top1 != outcome.top1 else \
            f"stored result: top1 {outcome.top1:.4f} top5 {outcome.top5:.4f}"
        print(f"already complete: {stored} ({out})")
    elif outcome.rank == 0:
        print(f"done: top1 {outcome.top1:.4f} top5 {outcome.top5:.4f} ({out})")
    if args.distribute:
        _teardown_to_file(out / f"teardown.rank{outcome.rank}.log")
    return 0


def _teardown_to_file(path: Path) -> None:
    """Send what this process writes to stderr from now on to ``path``. MindSpore's communication
    threads log ``[INFO] DISTRIBUTED ... Event base dispatch success!`` as they shut down, whatever
    ``GLOG_v`` says, and ``msrun --join True`` copies every rank's log to the console; after a
    finished run nothing else is left to say there. The exit code is unchanged."""
    sys.stdout.flush()
    sys.stderr.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(handle, 2)
    os.close(handle)


def _validate(args: argparse.Namespace) -> int:
    if args.spec is None and args.mindcv is None:
        print("note: no --spec; using the spec embedded in the checkpoint")
    result = validate(_load_spec(args.spec), args.ckpt, args.data, resolution=args.resolution,
                      batch_size=args.batch_size, mindcv_model=args.mindcv)
    print(f"top1 {result.top1:.4f}  top5 {result.top5:.4f}  loss {result.loss:.4f}  images {result.images}")
    return 0


def _export(args: argparse.Namespace) -> int:
    spec = _load_spec(args.spec)
    output = args.output or Path(args.ckpt).with_suffix("")
    written = export_model(spec, args.ckpt, output, file_format=args.format, batch_size=args.batch_size,
                           resolution=args.resolution)
    print(f"wrote {written}")
    return 0


def configure_train(train: argparse.ArgumentParser) -> None:
    train.description = ("Train a spec for real. Data parallel: msrun --worker_num 8 --local_worker_num 8 "
                         "nas train ... --distribute")
    train.add_argument("--spec", required=True, help="spec YAML file")
    train.add_argument("--recipe", required=True, help="recipe YAML (see experiments/recipes/)")
    train.add_argument("--data", required=True, help="'digits', 'fashion-mnist', 'mnist' or a directory "
                                                      "(IDX files, CIFAR-10 binaries or an ImageFolder tree)")
    train.add_argument("--device", choices=["CPU", "GPU", "Ascend"], default=None,
                       help="device target (default: the recipe's)")
    train.add_argument("--distribute", action="store_true", help="data-parallel over the msrun workers")
    train.add_argument("--resume", action="store_true", help="continue after the newest epoch checkpoint")
    train.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    train.add_argument("-o", "--output", default=None, help="output directory (default runs/train/<spec name>)")
    train.add_argument("--rank-digests", action="store_true",
                       help="every rank writes a digest of its trained weights to <output>/digests/")
    train.set_defaults(handler=_train)


def configure_validate(validate: argparse.ArgumentParser) -> None:
    validate.add_argument("--spec", default=None, help="spec YAML (default: the one embedded in the checkpoint)")
    validate.add_argument("--ckpt", required=True, help="checkpoint (ours, or MindCV's with --mindcv)")
    validate.add_argument("--data", required=True, help="'digits', 'fashion-mnist', 'mnist' or a dataset directory")
    validate.add_argument("--mindcv", default=None, metavar="MODEL", help="the checkpoint is MindCV's MODEL")
    validate.add_argument("--resolution", type=int, default=None, help="input resolution (default: the spec's)")
    validate.add_argument("--batch-size", type=int, default=64)
    validate.set_defaults(handler=_validate)


def configure_export_model(export: argparse.ArgumentParser) -> None:
    export.add_argument("--spec", default=None, help="spec YAML (default: the one embedded in the checkpoint)")
    export.add_argument("--ckpt", required=True, help="checkpoint file")
    export.add_argument("--format", default="MINDIR", help="MINDIR (default; MindSpore Lite and Ascend), AIR, ONNX")
    export.add_argument("--batch-size", type=int, default=1, help="batch of the exported input (default 1)")
    export.add_argument("--resolution", type=int, default=None, help="input resolution (default: the spec's)")
    export.add_argument("-o", "--output", default=None, help="output file (default: next to the checkpoint)")
    export.set_defaults(handler=_export)
