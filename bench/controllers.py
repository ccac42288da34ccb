"""Controller benchmark: ask+tell overhead, and sample efficiency on a SURROGATE objective.

    python -m bench.controllers [--seeds 10] [--checkpoints 100,300,1000]
                                [--controllers rl,tpe,evolution,random] [--overhead-trials 200]

Overhead: milliseconds per ask+tell of each controller on the ``mnasnet`` space, the objective
excluded (RL's batch drawing and PPO updates are spread over its asks; its first batch is
reported apart).

Sample efficiency: each controller searches the ``mnasnet`` space for the largest MnasNet soft
reward ``acc * (lat / 75 ms) ** -0.07`` of a fixed SURROGATE model (no network is trained or
measured; it is a deterministic function of the decoded spec):

- latency_ms = 0.25 ms per million MAdds (MobileNetV2's 300M at about 75 ms, the Pixel-1
  scale of the paper) + 0.1 ms per layer + 0.3 ms per layer with SE. (A measured look-up
  table would need every piece of the 10^18-point space that 4 x 1000 x 10 searches visit
  measured first, hours on this CPU; the surrogate keeps the benchmark about the controllers.)
- accuracy = 0.72 + 0.06 * tanh(log(MAdds / 300M)) (saturating in log MAdds) + per-block
  effects: SE +0.6%, an identity residual that applies +0.4% (pool skip +0.15%), kernel 5
  +0.3% in blocks 3-7, MBConv e6 +0.2%, depthwise-separable -0.5%, regular conv -1.5%.

Reported: the median over seeds of the best reward after each checkpoint, the number of seeds
where a controller beats random (same seed) at 300 trials, and RL's mean reward per PPO batch.

The default run (10 seeds x 1000 trials) takes about 12 minutes on 2 CPU cores. A smoke run:
``python -m bench.controllers --seeds 2 --checkpoints 50,100 --overhead-trials 40``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any, Callable

from bench.common import summary, write_report
from controllers import make_controller
from nas.campaign.reward import reward
from nas.spec.layers import plan_layers
from nas.spec.profile import profile
from search_spaces import get_space

TARGET_MS = 75.0
W = -0.07


def surrogate(spec: Any) -> tuple[float, float]:
    """(accuracy, latency_ms) of the documented surrogate model of ``spec``."""
    madds = profile(spec).madds / 1e6
    layers = plan_layers(spec)
    se_layers = sum(1 for layer in layers if layer.se_channels)
    latency = 0.25 * madds + 0.1 * len(layers) + 0.3 * se_layers
    accuracy = 0.72 + 0.06 * math.tanh(math.log(madds / 300.0))
    for index, block in enumerate(spec.blocks):
        block_layers = [layer for layer in layers if layer.block == index]
        if block.se is not None:
            accuracy += 0.006
        if any(layer.skip == "identity" for layer in block_layers):
            accuracy += 0.004
        elif block.skip == "pool":
            accuracy += 0.0015
        if index >= 2 and block.kernel == (5,):
            accuracy += 0.003
        if block.kind == "conv":
            accuracy -= 0.015
        elif block.expand is not None and list(block.expand) == [block_layers[0].in_channels] + [block.out] * (
                block.repeats - 1):
            accuracy -= 0.005
        elif block.expand is not None and block.expand[0] >= 6 * block_layers[0].in_channels:
            accuracy += 0.002
    return accuracy, latency


def make_objective(space: Any) -> Callable[[dict], tuple[float, float, float]]:
    """(reward, accuracy, latency_ms) of a point (cached: the surrogate is deterministic)."""
    cache: dict[tuple, tuple[float, float, float]] = {}

    def objective(decisions: dict) -> tuple[float, float, float]:
        key = tuple(decisions[d.name] for d in space.decisions)
        if key not in cache:
            accuracy, latency = surrogate(space.decode(decisions))
            cache[key] = (reward(accuracy, latency, TARGET_MS, "soft", w=W), accuracy, latency)
        return cache[key]

    return objective


def _told(name: str, outcome: tuple[float, float, float]) -> Any:
    """What a controller is told: NSGA-II gets (accuracy, latency), the others the reward."""
    return (outcome[1], outcome[2]) if name.partition(":")[0] == "nsga2" else outcome[0]


def _controller(name: str, space: Any, seed: int, rl_options: dict) -> Any:
    """Controller ``name``; a name such as ``tpe:history=300`` sets integer options of its own
    (so variants of one controller run side by side)."""
    base, _, tail = name.partition(":")
    options = dict(rl_options if base == "rl" else {})
    for item in filter(None, tail.split(",")):
        key, _, value = item.partition("=")
        options[key] = int(value)
    return make_controller(base, space, seed, **options)


def overhead(names: list[str], space: Any, trials: int, rl_options: dict) -> dict[str, Any]:
    """ms per ask+tell, objective excluded."""
    objective = make_objective(space)
    figures: dict[str, Any] = {}
    for name in names:
        if name == "rl":  # a first batch and update, outside the timing
            start = time.perf_counter()
            warmup = _controller(name, space, 0, rl_options)
            for _ in range(warmup.options["batch_size"]):
                trial = warmup.ask()
                warmup.tell(trial, objective(trial.decisions)[0])
            figures["rl_first_batch_s"] = time.perf_counter() - start
            print(f"{'rl':>10}: first batch and update {figures['rl_first_batch_s']:.2f} s")
        start = time.perf_counter()
        controller = _controller(name, space, 0, rl_options)
        created = time.perf_counter() - start
        times: list[float] = []
        for number in range(trials):
            start = time.perf_counter()
            trial = controller.ask()
            asked = time.perf_counter() - start
            value = _told(name, objective(trial.decisions))
            start = time.perf_counter()
            controller.tell(trial, value)
            times.append((asked + time.perf_counter() - start) * 1e3)
        first = times[0]
        stats = summary(times[1:])
        stats["mean"] = statistics.fmean(times[1:])
        figures[name] = {"create_ms": created * 1e3, "first_ask_tell_ms": first, "ask_tell_ms": stats}
        print(f"{name:>10}: {stats['mean']:8.2f} ms mean per ask+tell (median {stats['median']:.2f}, "
              f"p90 {stats['p90']:.2f}) over {trials - 1}; create {created * 1e3:.0f} ms, first {first:.0f} ms")
    return figures


def search(name: str, space: Any, seed: int, trials: int, checkpoints: list[int], rl_options: dict,
           objective: Callable[[dict], tuple[float, float, float]]) -> dict[str, Any]:
    """Best reward after each checkpoint for one controller and seed."""
    controller = _controller(name, space, seed, rl_options)
    best = -math.inf
    bests = {}
    start = time.perf_counter()
    for number in range(1, trials + 1):
        trial = controller.ask()
        outcome = objective(dict(trial.decisions))
        best = max(best, outcome[0])
        controller.tell(trial, _told(name, outcome))
        if number in checkpoints:
            bests[number] = best
    result = {"best": bests, "seconds": time.perf_counter() - start}
    if name == "rl":
        result["batch_mean_reward"] = [entry["mean_reward"] for entry in controller.history]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--checkpoints", default="100,300,1000", help="trial counts to report (the largest is run)")
    parser.add_argument("--controllers", default="rl,tpe,evolution,random",
                        help="names, or variants with integer options: tpe:history=300;tpe:history=1000 "
                             "(separate by ';' when a variant has a comma)")
    parser.add_argument("--overhead-trials", type=int, default=200)
    parser.add_argument("--overhead-controllers", default="rl,tpe,nsga2,random,evolution")
    parser.add_argument("--rl-batch-size", type=int, default=None, help="override the RL batch size M")
    parser.add_argument("--rl-learning-rate", type=float, default=None)
    parser.add_argument("--rl-epochs", type=int, default=None)
    parser.add_argument("--rl-entropy-weight", type=float, default=None)
    args = parser.parse_args()

    import optuna  # heavy: only the Optuna samplers' section needs it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    checkpoints = sorted(int(value) for value in args.checkpoints.split(","))
    names = [name for name in args.controllers.split(";" if ";" in args.controllers else ",") if name]
    rl_options = {key: value for key, value in (
        ("batch_size", args.rl_batch_size), ("learning_rate", args.rl_learning_rate), ("epochs", args.rl_epochs),
        ("entropy_weight", args.rl_entropy_weight)) if value is not None}
    space = get_space("mnasnet")
    figures: dict[str, Any] = {"args": vars(args), "space": space.config(), "space_size": space.size,
                               "objective": "SURROGATE: see bench/controllers.py docstring",
                               "reward": {"kind": "soft", "target_ms": TARGET_MS, "w": W}}
    centre_accuracy, centre_latency = surrogate(space.decode(space.center()))
    print(f"surrogate objective (not a trained network): MobileNetV2 accuracy {centre_accuracy:.4f}, "
          f"latency {centre_latency:.1f} ms, reward {make_objective(space)(space.center())[0]:.4f}")

    print(f"\n== overhead: ask+tell on the mnasnet space (size {space.size:.3e}) ==")
    figures["overhead"] = overhead([n for n in args.overhead_controllers.split(",") if n], space,
                                   args.overhead_trials, rl_options)

    print(f"\n== sample efficiency on the surrogate: {args.seeds} seeds x {checkpoints[-1]} trials ==")
    objective = make_objective(space)
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        runs[name] = []
        for seed in range(args.seeds):
            runs[name].append(search(name, space, seed, checkpoints[-1], checkpoints, rl_options, objective))
        seconds = sum(run["seconds"] for run in runs[name])
        medians = {n: statistics.median(run["best"][n] for run in runs[name]) for n in checkpoints}
        print(f"{name:>10}: median best reward " + "  ".join(f"@{n} {medians[n]:.4f}" for n in checkpoints)
              + f"  ({seconds:.0f} s)")
    efficiency: dict[str, Any] = {}
    for name in names:
        entry: dict[str, Any] = {
            "median_best": {n: statistics.median(run["best"][n] for run in runs[name]) for n in checkpoints},
            "best_per_seed": {n: [run["best"][n] for run in runs[name]] for n in checkpoints},
            "seconds": sum(run["seconds"] for run in runs[name])}
        if "random" in runs and name != "random":
            entry["seeds_beating_random"] = {
                n: sum(mine["best"][n] > theirs["best"][n] for mine, theirs in zip(runs[name], runs["random"]))
                for n in checkpoints}
            entry["median_ratio_to_random"] = {n: entry["median_best"][n] / efficiency_random(runs, n)
                                               for n in checkpoints}
        efficiency[name] = entry
    figures["sample_efficiency"] = efficiency
    if "random" in runs:
        middle = 300 if 300 in checkpoints else checkpoints[len(checkpoints) // 2]
        print(f"\nseeds (of {args.seeds}) beating random at {middle} trials (target: RL and TPE >= 8 of 10):")
        for name in names:
            if name != "random":
                print(f"{name:>10}: {efficiency[name]['seeds_beating_random'][middle]}")
    if "rl" in runs:
        curves = [run["batch_mean_reward"] for run in runs["rl"]]
        length = min(len(curve) for curve in curves)
        mean_curve = [statistics.fmean(curve[i] for curve in curves) for i in range(length)]
        figures["rl_batch_mean_reward"] = mean_curve
        step = max(1, length // 10)
        print("\nRL mean reward per PPO batch (mean over seeds), every "
              f"{step} batch(es): " + " ".join(f"{mean_curve[i]:.4f}" for i in range(0, length, step)))
        if length >= 10:
            head, tail = statistics.fmean(mean_curve[:5]), statistics.fmean(mean_curve[-5:])
            print(f"first 5 batches {head:.4f} -> last 5 batches {tail:.4f} (ratio {tail / head:.3f})")
            figures["rl_learning"] = {"first_5_batches": head, "last_5_batches": tail}
    write_report("controllers", figures)


def efficiency_random(runs: dict[str, list[dict[str, Any]]], checkpoint: int) -> float:
    return statistics.median(run["best"][checkpoint] for run in runs["random"])


if __name__ == "__main__":
    main()
