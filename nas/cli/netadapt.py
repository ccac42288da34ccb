"""``nas netadapt``: latency-driven, layer-wise pruning of a trained network."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas.models.checkpoint import spec_for_checkpoint
from nas.spec.arch import ArchSpec
from nas.spec.config import read_yaml
from nas.spec.errors import ConfigError
from netadapt.config import FINETUNE_MODES, PYNATIVE_MAX_STEPS, NetAdaptConfig, read_saved_config
from netadapt.grid import DEFAULT_GRID_STEP
from netadapt.run import run_netadapt

# CLI flag -> NetAdaptConfig field (None values are not overrides)
_FIELDS = ("budget_ms", "budget_ratio", "max_iters", "schedule", "initial_ratio", "decay", "fixed_ratio", "selection",
           "step_multiple", "min_width", "short_term_steps", "finetune_mode", "resolution", "latency_resolution",
           "latency_batch", "latency_threads", "latency_repeats", "latency_address", "latency_runtime", "device",
           "workers", "seed", "lut_grid_step", "lut_calibration")
# CLI flag -> (fine-tune section, TrainConfig field)
_TRAIN_FIELDS = {"batch_size": (("short_term", "long_term"), "batch_size"), "lr": (("short_term",), "lr"),
                 "long_term_epochs": (("long_term",), "epochs"), "long_term_lr": (("long_term",), "lr")}


def _train_overrides(args: argparse.Namespace, base: dict[str, Any]) -> None:
    """Apply the fine-tune flags to the ``short_term``/``long_term`` sections of ``base``."""
    for flag, (sections, name) in _TRAIN_FIELDS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        for section in sections:
            disabled = args.long_term_epochs == 0 or ("long_term" in base and base["long_term"] is None
                                                      and flag == "batch_size")
            if section == "long_term" and disabled:
                continue  # no long-term fine-tune: nothing to set
            current = base.get(section)
            base[section] = {**(dict(current) if isinstance(current, dict) else {}), name: value}
    if args.long_term_epochs == 0:
        base["long_term"] = None


def _config(args: argparse.Namespace) -> NetAdaptConfig:
    base: dict[str, Any] = {}
    saved = Path(args.output) / "config.yaml"
    if args.resume and saved.is_file():
        base = dict(read_saved_config(saved)["netadapt"])
    elif args.config:
        base = read_yaml(args.config)
    overrides = {name: getattr(args, name) for name in _FIELDS if getattr(args, name) is not None}
    if args.targets is not None:
        overrides["targets"] = tuple(part.strip() for part in args.targets.split(",") if part.strip())
    if "budget_ms" in overrides or "budget_ratio" in overrides:
        base.pop("budget_ms", None)
        base.pop("budget_ratio", None)
    base.update(overrides)
    _train_overrides(args, base)
    if base.get("budget_ms") is None and base.get("budget_ratio") is None:
        raise ConfigError("nas netadapt: give a budget: --budget-ms X or --budget-ratio R")
    try:
        return NetAdaptConfig.from_dict(base)
    except ConfigError as error:
        if args.config and not args.resume:
            raise ConfigError(f"{args.config}: {error}") from None
        raise


def _netadapt(args: argparse.Namespace) -> int:
    config = _config(args)
    spec = spec_for_checkpoint(ArchSpec.from_yaml(Path(args.spec)) if args.spec else None, args.ckpt)
    result = run_netadapt(spec, args.ckpt, args.data, args.output, config, lut_dir=args.lut, resume=args.resume,
                          ray_address=args.ray_address, log=lambda line: print(line, flush=True))
    print(f"final network: {result.spec_path} and {result.ckpt_path}; history: {Path(args.output) / 'history.csv'}")
    failure = result.failure()
    if failure is not None:
        print(f"nas: {failure}", file=sys.stderr)
        return 1
    return 0


def configure_netadapt(parser: argparse.ArgumentParser) -> None:
    parser.description = ("NetAdapt as refined for MobileNetV3: every iteration shrinks one expansion layer or one "
                          "residual group (the stem and head optionally) to the largest width whose estimated "
                          "latency meets the iteration's constraint, fine-tunes every proposal briefly (on Ray), "
                          "keeps the best, and measures it. A budget the network already meets is reported as "
                          "'nothing to do' (exit code 2, like every other input error); a final network that "
                          "is not faster than the seed, at the upper end of its measured interval, exits with "
                          "code 1.")
    parser.add_argument("--spec", default=None, help="spec YAML (default: the one embedded in the checkpoint)")
    parser.add_argument("--ckpt", required=True, help="trained checkpoint (ours, or one made by 'nas import mindcv')")
    parser.add_argument("--data", required=True,
                        help="'digits', 'fashion-mnist', 'mnist' or a dataset directory "
                             "(the data the model was trained on)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget-ms", type=float, default=None, help="latency budget in milliseconds (measured)")
    budget.add_argument("--budget-ratio", type=float, default=None,
                        help="latency budget as a fraction of the measured initial latency, e.g. 0.5")
    parser.add_argument("--lut", default=None, metavar="DIR",
                        help="latency look-up table (nas latency build-lut); default: build one in <output>/lut")
    parser.add_argument("--config", default=None, help="NetAdapt settings YAML (flags override it)")
    parser.add_argument("--short-term-steps", type=int, default=None, help="fine-tune steps per proposal (default 100)")
    parser.add_argument("--finetune-mode", choices=list(FINETUNE_MODES), default=None,
                        help=f"execution mode of the proposals' fine-tunes (default auto: pynative up to "
                             f"{PYNATIVE_MAX_STEPS} steps, where compiling a graph costs more than it saves; "
                             f"graph above)")
    parser.add_argument("--long-term-epochs", type=int, default=None,
                        help="final fine-tune epochs (default 3; 0: none)")
    parser.add_argument("--max-iters", type=int, default=None, help="maximum iterations (default 10)")
    parser.add_argument("--selection", choices=["slope", "accuracy"], default=None,
                        help="slope: largest dAcc/|dLatency| (MobileNetV3, default); accuracy: highest accuracy")
    parser.add_argument("--schedule", choices=["decay", "fixed"], default=None,
                        help="decay: initial-ratio * L0 * decay**i (default); fixed: fixed-ratio * L0 per iteration")
    parser.add_argument("--initial-ratio", type=float, default=None, help="first reduction, fraction of L0 (0.025)")
    parser.add_argument("--decay", type=float, default=None, help="reduction decay per iteration (0.96)")
    parser.add_argument("--fixed-ratio", type=float, default=None, help="fixed reduction, fraction of L0 (0.01)")
    parser.add_argument("--step-multiple", type=int, default=None, help="widths are multiples of this (8)")
    parser.add_argument("--min-width", type=int, default=None, help="smallest width proposed (default: the step)")
    parser.add_argument("--targets", default=None,
                        help="comma-separated subset of expand,group,stem,head (default: all)")
    parser.add_argument("--batch-size", type=int, default=None, help="fine-tune batch size (32)")
    parser.add_argument("--lr", type=float, default=None, help="short-term fine-tune learning rate (0.01)")
    parser.add_argument("--long-term-lr", type=float, default=None, help="long-term fine-tune peak LR, cosine (0.01)")
    parser.add_argument("--resolution", type=int, default=None, help="training resolution (default: the spec's)")
    parser.add_argument("--latency-resolution", type=int, default=None,
                        help="resolution latency is measured at (default: the training resolution)")
    parser.add_argument("--latency-batch", type=int, default=None, help="batch latency is measured at (1)")
    parser.add_argument("--latency-threads", type=int, default=None,
                        help="CPU threads for latency (default: 1, the repeatable setting; see 'nas latency --help')")
    parser.add_argument("--latency-address", default=None,
                        help="measure on the device host of this Ray cluster (see 'nas latency measure --address')")
    parser.add_argument("--latency-runtime", choices=["onnxruntime", "mindspore"], default=None,
                        help="runtime that measures (default: onnxruntime on a CPU, mindspore on GPU/Ascend); "
                             "a --lut must be measured with the same one")
    parser.add_argument("--latency-repeats", type=int, default=None,
                        help="seed/network pairs measured per chosen network; the median ratio counts (3)")
    parser.add_argument("--device", default=None, help="CPU, GPU or Ascend (default CPU)")
    parser.add_argument("--workers", type=int, default=None,
                        help="proposals fine-tuned in parallel on Ray (default 2; 1 runs them here without Ray)")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one")
    parser.add_argument("--lut-grid-step", type=int, default=None,
                        help=f"when building the table: measure every N-th width (interpolate between; "
                             f"default {DEFAULT_GRID_STEP})")
    parser.add_argument("--lut-calibration", type=int, default=None,
                        help="when building the table: combined shrinks measured end to end, with the seed, to "
                             "calibrate it (4, so 5 networks)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the data split and fine-tunes (0)")
    parser.add_argument("--resume", action="store_true", help="continue after the last finished iteration")
    parser.add_argument("-o", "--output", required=True, help="output directory, e.g. runs/<name>")
    parser.set_defaults(handler=_netadapt)
