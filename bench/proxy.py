"""Proxy fidelity on Fashion-MNIST: does the short proxy training rank architectures as a long
schedule does, and is its seed noise small next to the spread between architectures?

About 12 architectures: references at several widths (MobileNetV2, MobileNetV3-Small/-Large,
MnasNet-A1) and samples of the ``mnasnet`` and ``mobilenet_v3`` spaces. Each is trained

- with every candidate proxy setting (``--proxies``, ``subset:epochs:lr``), and
- with the long schedule (the whole training split, ``--long-epochs``; at least 5x the steps of
  the longest proxy),

and scored on the same held-out split. Three architectures are also trained with each proxy at
``--seeds`` seeds. Reported per proxy: Kendall's tau between proxy and long accuracy, the mean seed
std, the spread across architectures (std of their proxy accuracies), and the cost. The chosen
proxy is the cheapest with tau >= 0.6 and seed std below a third of the spread.

Every training is stored as it finishes (``bench/results/proxy/runs.jsonl``), so an interrupted
run resumes where it stopped; figures go to stdout and ``bench/results/proxy.json``. Every training
warms up for ``--warmup`` epochs, and is scored after its batch-norm statistics are recomputed
(``nas.training.proxy``); rows of an older protocol (``PROTOCOL``) are not reused. ``--jobs 2``
trains two networks at once with one thread each, which on a 2-core machine finishes more
trainings per hour than one at a time on two threads (small networks parallelise poorly).

    python -m bench.proxy [--proxies 5000:2:0.05,10000:2:0.05] [--long-epochs 3] [--jobs 2] [--max-minutes 90]
    python -m bench.proxy --demo     # the seed noise of experiments/demo.yaml's proxy (digits) alone
"""
from __future__ import annotations

import argparse
import functools
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from scipy.stats import kendalltau

from bench.common import RESULTS, Ledger, run_pool, write_report
from latency.sampling import space_specs
from nas.campaign.config import load_config
from nas.spec.arch import ArchSpec
from nas.training.config import DataConfig, TrainConfig
from nas.training.data import open_data
from nas.training.proxy import ProxyResult, train_proxy
from search_spaces import get_space, references

REFERENCES = (("mobilenet_v2", 0.35), ("mobilenet_v2", 0.5), ("mobilenet_v2", 1.0), ("mobilenet_v3_small", 0.5),
              ("mobilenet_v3_small", 1.0), ("mobilenet_v3_large", 0.35), ("mnasnet_a1", 0.35), ("mnasnet_a1", 0.5))
SPACES = (("mnasnet", {"width": 0.35}), ("mobilenet_v3", {"width": 0.5}))
HELD_OUT = 0.1  # 6,000 of the 60,000 training images score every run
BATCH = 64
PROTOCOL = 3  # 3: warm-up, and batch-norm statistics recomputed before scoring, set by the first batch
# (2 reset them to 0 and 1 first, whose residual swamped low-variance layers; 1 had neither: slow BNs scored at chance)


@dataclass(frozen=True)
class Setting:
    """A training schedule: ``subset`` training images (0: all), ``epochs``, peak ``lr``."""

    subset: int
    epochs: int
    lr: float

    @property
    def key(self) -> str:
        return f"{self.subset}:{self.epochs}:{self.lr:g}"

    def steps(self, train_images: int) -> int:
        return (self.subset or train_images) // BATCH * self.epochs


def parse_setting(text: str) -> Setting:
    try:
        subset, epochs, lr = text.split(":")
        return Setting(int(subset), int(epochs), float(lr))
    except ValueError:
        raise SystemExit(f"--proxies: {text!r} is not subset:epochs:lr (e.g. 5000:3:0.1)") from None


def architectures(count: int) -> list[ArchSpec]:
    specs = [references.get(name, width).replace(name=f"{name}_x{width:g}") for name, width in REFERENCES]
    per_space = max(0, count - len(specs)) // len(SPACES) + 1
    for name, options in SPACES:
        sampled, _ = space_specs(name, per_space, seed=11, options=options)
        specs.extend(sampled)
    return [spec.replace(num_classes=10) for spec in specs[:count]]


def ledger(out: str) -> Ledger:
    """Finished trainings, keyed by (arch_id, setting, seed)."""
    return Ledger(Path(out) / "runs.jsonl", ("arch_id", "setting", "seed"), {"protocol": PROTOCOL})


_DATA: dict[int, Any] = {}  # per worker process: the opened data, by subset size


def train_one(spec: ArchSpec, setting: Setting, seed: int, args: argparse.Namespace) -> ProxyResult:
    """One training (in a worker process): ``spec`` with ``setting`` and training seed ``seed``."""
    if setting.subset not in _DATA:
        _DATA[setting.subset] = open_data(DataConfig("fashion-mnist", resolution=args.resolution, held_out=HELD_OUT,
                                                     seed=0, subset=setting.subset, augment=False))
    config = TrainConfig(epochs=setting.epochs, batch_size=BATCH, lr=setting.lr, warmup_epochs=args.warmup,
                         seed=seed, weight_decay=4e-5)
    return train_proxy(spec.replace(resolution=args.resolution), _DATA[setting.subset], config, device=None,
                       threads=args.threads)


def run(args: argparse.Namespace) -> dict:
    proxies = [parse_setting(text) for text in args.proxies.split(",")]
    specs = architectures(args.archs)
    train_images = open_data(DataConfig("fashion-mnist", resolution=args.resolution, held_out=HELD_OUT)).sizes["train"]
    longest = max(setting.steps(train_images) for setting in proxies)
    long = Setting(0, args.long_epochs, args.long_lr)
    if long.steps(train_images) < 5 * longest:
        raise SystemExit(f"--long-epochs {args.long_epochs}: {long.steps(train_images)} steps, fewer than 5x the "
                         f"longest proxy's {longest}; raise it")
    # Every proxy, then the long schedule (together they give Kendall's tau), then the seed repeats: a
    # proxy whose tau fails needs no seed noise, so a run cut short by --max-minutes already decides that.
    jobs = [(spec, setting, 0) for setting in proxies for spec in specs]
    jobs += [(spec, long, 0) for spec in specs]
    jobs += [(spec, setting, seed) for setting in proxies for spec in specs[:3] for seed in range(1, args.seeds)]
    runs = ledger(args.out)
    todo = [job for job in jobs if (job[0].arch_id, job[1].key, job[2]) not in runs.done]
    print(f"{len(specs)} architectures, {len(proxies)} proxies + the long schedule ({long.steps(train_images)} "
          f"steps); {len(jobs)} trainings, {len(todo)} to run", flush=True)

    def finished(job: tuple[Any, ...], result: ProxyResult) -> str:
        spec, setting, seed = job
        runs.add({"arch_id": spec.arch_id, "name": spec.name, "setting": setting.key, "seed": seed,
                  **asdict(result)})
        return f"{spec.name} {setting.key} seed {seed}: top1 {result.top1:.4f} ({result.train_seconds:.0f} s)"

    queue = run_pool(todo, functools.partial(train_one, args=args), args.jobs, finished, args.max_minutes)
    ranked = all((spec.arch_id, setting.key, 0) in runs.done for setting in [*proxies, long] for spec in specs)
    report = figures(specs, proxies, long, runs, train_images, args.seeds) if ranked else None
    if queue:
        if report is not None:
            write_report("proxy", {"args": vars(args), **report})
        raise SystemExit(f"--max-minutes {args.max_minutes:g}: stopped with {len(queue)} of {len(todo)} trainings "
                         f"not started; every finished one is kept in {runs.path}: run again to go on")
    assert report is not None  # every job ran
    return report


def figures(specs: list[ArchSpec], proxies: list[Setting], long: Setting, runs: Ledger, train_images: int,
            seeds: int) -> dict:
    """Kendall's tau and the seed noise of each proxy. A proxy whose seed repeats are not all run yet has
    ``seed_std`` None and ``passes`` None (undecided), unless its tau already fails."""
    def top1(spec: ArchSpec, setting: Setting, seed: int = 0) -> float:
        return float(runs.done[(spec.arch_id, setting.key, seed)]["top1"])

    def seconds(setting: Setting) -> float:
        return statistics.fmean(float(runs.done[(s.arch_id, setting.key, 0)]["train_seconds"]) for s in specs)

    long_acc = [top1(spec, long) for spec in specs]
    report = {"architectures": [spec.name for spec in specs], "long": {"setting": long.key,
              "steps": long.steps(train_images), "top1": long_acc, "train_s_mean": seconds(long)}, "proxies": []}
    for setting in proxies:
        acc = [top1(spec, setting) for spec in specs]
        tau = float(kendalltau(acc, long_acc).statistic)
        repeated = all((spec.arch_id, setting.key, seed) in runs.done for spec in specs[:3] for seed in range(seeds))
        seed_std = statistics.fmean(statistics.pstdev([top1(spec, setting, seed) for seed in range(seeds)])
                                    for spec in specs[:3]) if repeated else None
        spread = statistics.pstdev(acc)
        passes = False if tau < 0.6 else None if seed_std is None else seed_std < spread / 3
        entry = {"setting": setting.key, "steps": setting.steps(train_images), "train_s_mean": seconds(setting),
                 "top1": acc, "kendall_tau": tau, "seed_std": seed_std, "spread_std": spread, "passes": passes}
        report["proxies"].append(entry)
    passing = [entry for entry in report["proxies"] if entry["passes"]]
    report["chosen"] = min(passing, key=lambda entry: entry["train_s_mean"])["setting"] if passing else None
    print(f"\nlong schedule {long.key}: {long.steps(train_images)} steps, mean {seconds(long):.0f} s per network")
    print("| proxy (subset:epochs:lr) | steps | s per network | Kendall tau | seed std | spread (std) | passes |")
    print("|---|---|---|---|---|---|---|")
    for entry in report["proxies"]:
        print(f"| {entry['setting']} | {entry['steps']} | {entry['train_s_mean']:.0f} | {entry['kendall_tau']:.3f} | "
              f"{'not run' if entry['seed_std'] is None else format(entry['seed_std'], '.4f')} | "
              f"{entry['spread_std']:.4f} | {({True: 'yes', False: 'no'}).get(entry['passes'], 'undecided')} |")
    print(f"chosen: {report['chosen'] or 'none passes (tau >= 0.6 and seed std < spread / 3)'}")
    return report


def parse_train(text: str | None) -> dict[str, Any]:
    """``epochs=4,lr=0.05`` -> ``{"epochs": 4, "lr": 0.05}`` (values parsed as YAML scalars)."""
    changes: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--train: {item!r} is not key=value (e.g. epochs=4,lr=0.05)")
        changes[key.strip()] = yaml.safe_load(value)
    return changes


def demo_seed_noise(seeds: int, train_changes: dict[str, Any]) -> dict:
    """The seed std of the demo's own proxy (``experiments/demo.yaml``, its ``evaluator.train``
    changed by ``train_changes``): two of its baselines and one sample of its space, each trained
    with ``seeds`` training seeds on the same split."""
    config = load_config(Path(__file__).resolve().parent.parent / "experiments" / "demo.yaml")
    train = config.evaluator.train.updated(train_changes, "--train")
    print(f"demo proxy: {train}", flush=True)
    data = open_data(config.evaluator.data_config(config.seed))
    archs = []
    for width in (0.35, 0.75):
        space = get_space(config.space.name, **{**config.space.options, "width": width})
        archs.append((f"baseline x{width:g}", space.decode(space.center())))
    space = get_space(config.space.name, **config.space.options)
    archs.append(("sample", space.decode(space.sample(3))))
    rows = []
    for name, spec in archs:
        accs = [train_proxy(spec, data, train.replace(seed=seed), device=None, threads=1).top1
                for seed in range(seeds)]
        rows.append({"name": name, "top1": accs, "mean": statistics.fmean(accs), "std": statistics.pstdev(accs)})
        print(f"{name}: top1 {', '.join(f'{a:.4f}' for a in accs)}; mean {rows[-1]['mean']:.4f}, "
              f"std {rows[-1]['std']:.4f}", flush=True)
    seed_std = statistics.fmean(row["std"] for row in rows)
    spread = statistics.pstdev([row["mean"] for row in rows])
    print(f"demo proxy: mean seed std {seed_std:.4f}, spread of the means (std) {spread:.4f}; seed std "
          f"{'below' if seed_std < spread / 3 else 'not below'} a third of the spread")
    return {"train": asdict(train), "demo": rows, "seed_std": seed_std, "spread_std": spread}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxies", default="5000:2:0.05,5000:4:0.05,10000:2:0.05",
                        help="candidate proxy settings, subset:epochs:lr, comma separated")
    parser.add_argument("--long-epochs", type=int, default=2, help="epochs of the long schedule (whole split)")
    parser.add_argument("--long-lr", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up epochs of every training")
    parser.add_argument("--archs", type=int, default=12, help="architectures (references first, then samples)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the seed-noise check (3 architectures)")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, each in its own process")
    parser.add_argument("--threads", type=int, default=1, help="threads per training")
    parser.add_argument("--out", default=str(RESULTS / "proxy"), help="where finished trainings are kept")
    parser.add_argument("--max-minutes", type=float, help="start no training after this many minutes (those "
                        "running finish); run again to go on")
    parser.add_argument("--demo", action="store_true", help="only the seed noise of the demo's proxy (digits)")
    parser.add_argument("--train", help="with --demo: changes to the demo's proxy training, e.g. epochs=4,lr=0.05")
    args = parser.parse_args(argv)
    if args.demo:
        write_report("proxy_demo", {"args": vars(args), **demo_seed_noise(args.seeds, parse_train(args.train))})
        return 0
    report = run(args)
    write_report("proxy", {"args": vars(args), **report})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
