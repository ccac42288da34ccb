"""Where a NetAdapt proposal's time goes, and which execution mode makes a short fine-tune cheap.

Each proposal is one job as a NetAdapt worker runs it (``netadapt.worker.evaluate_proposal``):
surgery from the parent checkpoint, ``--steps`` fine-tuning steps, the held-out evaluation. The
parent is MobileNetV3-Small 1.0 (the architecture of MindCV's ``mobilenet_v3_small_100``; the
weights do not change the time) at ``--resolution``; the proposals are ``--proposals`` different
one-target shrinks of it, run one after another in one process, as in a long-lived worker. Every
mode runs in its own fresh process, the modes alternating ``--rounds`` times, and is reported as
the split setup / compile / steps / eval and as a ratio against GRAPH mode in the same run.

    python -m bench.proposal [--resolution 224] [--steps 5] [--proposals 3] [--rounds 2]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import os
import statistics
import tempfile
from pathlib import Path

from bench.common import write_report
from nas.models.builder import build_network
from nas.models.checkpoint import save_weights
from nas.training.config import EXECUTION_MODES, DataConfig
from netadapt.config import SHORT_TERM
from netadapt.grid import grid_specs
from netadapt.worker import ProposalJob, evaluate_proposal
from search_spaces import references


def run_mode(mode: str, args: argparse.Namespace) -> list[dict]:
    """The proposals of one mode, in this (fresh) process; one split per proposal."""
    parent = references.get("mobilenet_v3_small").replace(num_classes=10, resolution=args.resolution)
    proposals = [spec for spec in grid_specs(parent, 8, grid_step=1000) if spec.arch_id != parent.arch_id]
    with tempfile.TemporaryDirectory() as folder:
        parent_ckpt = Path(folder) / "parent.ckpt"
        save_weights(build_network(parent, seed=0), parent_ckpt, parent)
        rows = []
        for index, spec in enumerate(proposals[:args.proposals]):
            job = ProposalJob(key=f"p{index}", parent_spec=parent.to_yaml(), parent_ckpt=str(parent_ckpt),
                              spec=spec.to_yaml(), out_ckpt=str(Path(folder) / f"p{index}.ckpt"),
                              data=DataConfig("digits", resolution=args.resolution), train=SHORT_TERM,
                              steps=args.steps, eval_batch=args.eval_batch, seed=0, threads=args.threads,
                              mode=mode)
            outcome = evaluate_proposal(job)
            if not outcome.ok:
                raise SystemExit(f"{mode} proposal {index}: {outcome.error}")
            rows.append({"mode": mode, "proposal": index, "total_s": outcome.seconds, "setup_s": outcome.setup_s,
                         "compile_s": outcome.compile_s, "steps_s": outcome.steps_s, "eval_s": outcome.eval_s})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5, help="short-term fine-tune steps per proposal")
    parser.add_argument("--proposals", type=int, default=3, help="proposals per process (distinct shapes)")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per mode, alternating")
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default=",".join(EXECUTION_MODES))
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    os.environ["NAS_LOCK_DIR"] = tempfile.mkdtemp(prefix="bench-proposal-locks-")  # wait on no one else's jobs
    rows: list[dict] = []
    context = multiprocessing.get_context("spawn")  # a fresh MindSpore per mode and round
    for round_index in range(args.rounds):
        for mode in modes:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                found = pool.submit(run_mode, mode, args).result()
            for row in found:
                row["round"] = round_index
                print(f"round {round_index} {mode:<8} proposal {row['proposal']}: {row['total_s']:6.1f} s = setup "
                      f"{row['setup_s']:.1f} + compile {row['compile_s']:.1f} + steps {row['steps_s']:.1f} + eval "
                      f"{row['eval_s']:.1f}", flush=True)
            rows.extend(found)
    per_mode = {}
    for mode in modes:
        mine = [row for row in rows if row["mode"] == mode]
        total = statistics.median(row["total_s"] for row in mine)
        overhead = statistics.median((row["setup_s"] + row["compile_s"]) / row["total_s"] for row in mine)
        per_mode[mode] = {"median_total_s": total, "median_setup_compile_share": overhead,
                          **{f"median_{key}": statistics.median(row[key] for row in mine)
                             for key in ("setup_s", "compile_s", "steps_s", "eval_s")}}
    base = per_mode[modes[0]]["median_total_s"]
    print(f"\n{args.steps} steps at {args.resolution} px, batch {SHORT_TERM.batch_size}, "
          f"{args.threads} threads")
    print(f"| mode | median s per proposal | vs {modes[0]} | setup + compile share | compile s | steps s | "
          "eval s |")
    print("|---|---|---|---|---|---|---|")
    for mode, entry in per_mode.items():
        print(f"| {mode} | {entry['median_total_s']:.1f} | {entry['median_total_s'] / base:.2f}x | "
              f"{entry['median_setup_compile_share']:.0%} | {entry['median_compile_s']:.1f} | "
              f"{entry['median_steps_s']:.1f} | {entry['median_eval_s']:.1f} |")
    write_report("proposal", {"args": vars(args), "rows": rows, "per_mode": per_mode,
                              "short_term": dataclasses.asdict(SHORT_TERM)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
