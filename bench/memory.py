"""A NetAdapt worker's memory over 30 proposals at 224 px on an imported ``mobilenet_v3_small_100``.

The model is MindCV's ``mobilenet_v3_small_100`` (10 classes, random weights: nothing can be
downloaded here, and the weights do not change the memory), saved by MindSpore and brought in
through ``nas import mindcv``'s own code (:func:`nas.models.mindcv.import_mindcv`). Its proposals
are one-target shrinks (``netadapt.grid``), evaluated as NetAdapt's Ray runner evaluates them
(``netadapt.worker.run_proposal``: surgery from the parent checkpoint, ``--steps`` fine-tune steps,
the held-out evaluation, the compiled graphs released), ``--jobs`` of them one after another in
one Ray worker through the job pool, which records every job's peak resident memory.

Each ``--recycle`` setting runs the same jobs: NetAdapt's own (a fresh worker process every
``netadapt.worker.RECYCLE_AFTER`` jobs) and ``never`` (one process for every job), side by side in
one run. The acceptance test of ``make test`` (``tests/campaign/test_memory.py``) holds a
campaign worker to the same bound at 16 px: every job's peak within 1.5x of the third job's.

    python -m bench.memory [--jobs 30] [--steps 1] [--resolution 224] [--recycle 2,never]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_report
from nas.models.mindcv import import_mindcv
from nas.runtime.pool import JobPool
from nas.spec.arch import ArchSpec
from nas.training.config import DataConfig
from netadapt.config import SHORT_TERM
from netadapt.grid import grid_specs
from netadapt.worker import RECYCLE_AFTER, ProposalJob, run_proposal

MODEL = "mobilenet_v3_small_100"
BOUND = 1.5  # every job's peak within this factor of the third job's (the acceptance bound)


def imported_model(folder: Path) -> tuple[ArchSpec, Path]:
    """MindCV's model with 10 classes, saved by MindSpore and imported as ``nas import mindcv`` does."""
    import mindcv  # heavy, optional: MindCV is needed only to make the model being imported
    import mindspore as ms

    source = folder / "mindcv.ckpt"
    ms.save_checkpoint(mindcv.create_model(MODEL, num_classes=10), str(source))
    spec_path, ckpt = import_mindcv(MODEL, source, folder / "imported")
    return ArchSpec.from_yaml(spec_path), ckpt


def run_setting(recycle: int | None, jobs: list[ProposalJob], threads: int) -> list[dict[str, Any]]:
    """The jobs one after another in one Ray worker (replaced every ``recycle`` jobs)."""
    pool: JobPool[str] = JobPool(run_proposal, workers=1, num_cpus=threads, timeout_s=1800.0, recycle_after=recycle)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for outcome in pool.map_unordered((job.key, (job,)) for job in jobs):
            result = outcome.value if outcome.ok else None
            error = outcome.error or (result.error if result is not None else None)
            if error is not None:
                raise SystemExit(f"bench.memory: proposal {outcome.key} failed: {error}")
            rows.append({"job": len(rows), "key": outcome.key, "peak_rss_mb": outcome.peak_rss_mb,
                         "seconds": result.seconds})
            elapsed = time.perf_counter() - started
            eta = elapsed / len(rows) * (len(jobs) - len(rows))
            print(f"  recycle {recycle or 'never'}: job {len(rows)}/{len(jobs)} peak {outcome.peak_rss_mb:.0f} MiB, "
                  f"{result.seconds:.0f} s (ETA {eta / 60:.1f} min)", file=sys.stderr, flush=True)
    finally:
        pool.close()
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    peaks = [row["peak_rss_mb"] for row in rows]
    third = peaks[2]
    later = max(peaks[3:])
    return {"third_mb": third, "max_after_third_mb": later, "ratio": later / third,
            "within_bound": later <= BOUND * third, "last_mb": peaks[-1], "max_mb": max(peaks),
            "median_s": statistics.median(row["seconds"] for row in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30, help="proposals per setting, one after another (>= 4)")
    parser.add_argument("--steps", type=int, default=1, help="short-term fine-tune steps per proposal")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="CPUs of the one worker")
    parser.add_argument("--recycle", default=f"{RECYCLE_AFTER},never",
                        help=f"worker recycling settings, run in turn: jobs per process, or 'never' "
                             f"(default {RECYCLE_AFTER},never; {RECYCLE_AFTER} is NetAdapt's)")
    args = parser.parse_args(argv)
    if args.jobs < 4:
        parser.error(f"--jobs: at least 4 (the bound compares later jobs with the third), got {args.jobs}")
    try:
        settings = [None if text == "never" else int(text) for text in args.recycle.split(",")]
    except ValueError:
        parser.error(f"--recycle: a comma-separated list of job counts or 'never', got {args.recycle!r}")
    if any(setting is not None and setting < 1 for setting in settings):
        parser.error(f"--recycle: job counts must be at least 1, got {args.recycle!r}")
    os.environ["NAS_LOCK_DIR"] = tempfile.mkdtemp(prefix="bench-memory-locks-")  # wait on no one else's jobs
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as name:
        folder = Path(name)
        parent, parent_ckpt = imported_model(folder)
        parent = parent.replace(resolution=args.resolution)
        shrinks = [spec for spec in grid_specs(parent, 8, grid_step=1000) if spec.arch_id != parent.arch_id]
        data = DataConfig("digits", resolution=args.resolution)
        jobs = [ProposalJob(key=f"p{index:02d}", parent_spec=parent.to_yaml(), parent_ckpt=str(parent_ckpt),
                            spec=shrinks[index % len(shrinks)].to_yaml(), out_ckpt=str(folder / f"p{index}.ckpt"),
                            data=data, train=SHORT_TERM, steps=args.steps, eval_batch=args.eval_batch, seed=index,
                            threads=args.threads, mode="pynative")
                for index in range(args.jobs)]
        print(f"{MODEL} imported; {args.jobs} proposals ({len(shrinks)} distinct shrinks) at {args.resolution} px, "
              f"{args.steps} step(s) each", file=sys.stderr, flush=True)
        for setting in settings:
            rows = run_setting(setting, jobs, args.threads)
            results[str(setting or "never")] = {"rows": rows, **summary(rows)}
    print(f"\n{args.jobs} NetAdapt proposals in one Ray worker, {MODEL} imported, {args.resolution} px, "
          f"{args.steps} step(s), PYNATIVE")
    print("| worker recycled every | 3rd job's peak MiB | max peak after it | ratio | within 1.5x | last job's peak | "
          "median s per job |")
    print("|---|---|---|---|---|---|---|")
    for setting, entry in results.items():
        label = f"{setting} jobs" if setting != "never" else "never"
        print(f"| {label} | {entry['third_mb']:.0f} | {entry['max_after_third_mb']:.0f} | {entry['ratio']:.2f} | "
              f"{'yes' if entry['within_bound'] else 'no'} | {entry['last_mb']:.0f} | {entry['median_s']:.0f} |")
    write_report("memory", {"args": vars(args), "model": MODEL, "bound": BOUND, "settings": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
