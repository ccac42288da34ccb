"""Campaign driver overhead at MnasNet's scale (about 8,000 sampled models in one search).

The real driver (:class:`nas.campaign.driver.Campaign`: the controller, Optuna storage on SQLite
and on PostgreSQL, Ray tasks, the controller state saved after every tell) runs with an
evaluator that returns at once: :func:`instant_evaluation`, the SURROGATE model of
``bench.controllers`` (accuracy and latency as functions of the decoded spec). It lives here, in
``bench/``, and is passed through ``Campaign(evaluate=...)``; the product never uses it.

For each controller and storage one campaign runs to the largest ``--trials`` checkpoint. The
trials' completion times give the cost per trial *at* each checkpoint n (the mean gap between
completions over the trials (0.9 n, n]), the driver's own share of it (that window less the time
the driver sat blocked on workers inside it), how many of those trials repeated an architecture
(reused: no worker runs them), the mean over the first n, and the growth: the exponent
of cumulative wall time against n between the first and last checkpoints (1.0 is linear), and
the ratio of the per-trial cost at the last checkpoint to that at the first.

Beside the campaigns, the cost of storing one trial's record is compared side by side on each
storage: ``--attrs`` user attributes written one commit each (Optuna's ``set_user_attr``) against
one transaction (:func:`controllers.optuna_rdb.write_user_attrs`, what the driver uses),
alternating on the same study; medians and their ratio. So is asking one trial of the MnasNet
space's decisions (Optuna's ``study.ask`` with them as fixed distributions, a commit per
decision) against the same ask inside :func:`controllers.optuna_rdb.params_in_one_transaction`
(what the driver's ask uses).

That end-to-end figure includes the Ray workers' own costs (a task's round trip, and a worker
process started after every 8 evaluations, whose MindSpore import a real trial amortises). The
driver's own share is reported beside it: the wall time less the time the driver sat blocked
waiting on workers (``JobPool.wait``, timed by this benchmark), per trial.

Beside it, the CPU time of the driver's thread per trial over the same windows (read at each
progress line): what the driver itself computes, whatever else competes for the cores. A Ray
worker is replaced after the campaign's ``RECYCLE_AFTER`` evaluations, as in a real campaign;
``--recycle-after never`` keeps the workers (the instant evaluator holds no memory), so that no
worker's MindSpore import competes with the driver, and a run of 8,000 trials takes minutes
instead of about an hour of worker restarts.

    python -m bench.driver [--trials 100,1000,8000] [--controllers rl,tpe] [--storages sqlite,postgresql]
                           [--workers 2] [--postgres-url URL] [--recycle-after 8|never]

Without ``--postgres-url`` a throwaway PostgreSQL server is started from Debian's ``postgresql``
package (as the tests do). Target: <= 50 ms per trial at 8,000, with no super-linear growth.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import optuna

from bench.common import write_report
from bench.controllers import TARGET_MS, W, surrogate
from controllers.optuna_rdb import params_in_one_transaction, write_user_attrs
from controllers.optuna_study import distributions
from nas.campaign.config import config_from_dict
from nas.campaign.driver import RECYCLE_AFTER, Campaign
from nas.campaign.evaluate import Evaluation
from nas.runtime.pool import JobPool
from nas.spec.arch import ArchSpec
from search_spaces import get_space

PROGRESS = re.compile(r"\[(\d+)/\d+\]")  # the campaign's progress line: [finished/budget] ...


def instant_evaluation(spec_yaml: str, evaluator: Any, latency: Any, seed: int, gate: Any = None) -> Evaluation:
    """The benchmark's evaluator, with ``evaluate_candidate``'s arguments: the surrogate's accuracy
    and latency of the spec, at once (nothing is trained or measured)."""
    accuracy, latency_ms = surrogate(ArchSpec.from_yaml(spec_yaml))
    return Evaluation(latency_ms=latency_ms, latency_source="measured", measure_seconds=0.0, accuracy=accuracy,
                      proxy_epochs=0, proxy_steps=0)


def campaign_config(name: str, controller: str, storage: str | None, trials: int, workers: int) -> Any:
    return config_from_dict({
        "name": name, "seed": 0,
        "space": {"name": "mnasnet", "options": {"num_classes": 10}},
        "controller": {"name": controller, "options": {}},
        "reward": {"kind": "soft", "target_ms": TARGET_MS, "w": W},
        "latency": {"source": "measure", "device": "CPU", "threads": 1},
        "evaluator": {"dataset": "digits", "resolution": 32},
        "budget": {"trials": trials},
        "baselines": "none",
        "workers": workers,
        **({"storage": storage} if storage else {}),
    })


class BlockedTime:
    """Times every ``JobPool.wait`` while active: the seconds the driver sat waiting on workers."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.intervals: list[tuple[float, float]] = []  # each wait's (start, end), in time.time()
        self._original = JobPool.wait

    def __enter__(self) -> "BlockedTime":
        original, timer = self._original, self

        def timed_wait(pool: Any, timeout: float = 1.0) -> Any:
            started, clock = time.perf_counter(), time.time()
            try:
                return original(pool, timeout)
            finally:
                timer.seconds += time.perf_counter() - started
                timer.intervals.append((clock, time.time()))

        JobPool.wait = timed_wait  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        JobPool.wait = self._original  # type: ignore[method-assign]


def window_start(n: int) -> int:
    """The index of the first trial of checkpoint n's window (0.9 n, n]."""
    return max(1, int(0.9 * n))


def per_trial_ms(completions: list[float], n: int) -> float:
    """Mean gap between completions over the trials (0.9 n, n], in ms."""
    first = window_start(n)
    gaps = [completions[i] - completions[i - 1] for i in range(first, min(n, len(completions)))]
    return 1000 * statistics.fmean(gaps) if gaps else math.nan


def driver_ms_at(completions: list[float], n: int, blocked: list[tuple[float, float]]) -> float:
    """The driver's own ms per trial over the trials (0.9 n, n]: that window's wall time less the
    time the driver sat blocked on workers inside it, per trial."""
    first = window_start(n)
    if min(n, len(completions)) - first < 1:
        return math.nan
    start, end = completions[first - 1], completions[min(n, len(completions)) - 1]
    waited = sum(max(0.0, min(end, stop) - max(start, begin)) for begin, stop in blocked)
    return 1000 * (end - start - waited) / (min(n, len(completions)) - first)


def cpu_ms_at(marks: list[tuple[int, float]], n: int) -> float:
    """The driver thread's CPU ms per trial over the trials (0.9 n, n], from ``marks``: (trials
    finished, the thread's CPU seconds) at each progress line."""
    begin = next(((done, cpu) for done, cpu in marks if done >= window_start(n)), None)
    end = next(((done, cpu) for done, cpu in reversed(marks) if done <= n), None)  # a reused trial logs no line
    if begin is None or end is None or end[0] <= begin[0]:
        return math.nan
    return 1000 * (end[1] - begin[1]) / (end[0] - begin[0])


def run_one(controller: str, storage_name: str, storage: str | None, checkpoints: list[int], workers: int,
            runs_dir: Path, recycle_after: int | None = RECYCLE_AFTER) -> dict[str, Any]:
    trials = max(checkpoints)
    name = f"driver-{controller}-{storage_name}-{uuid.uuid4().hex[:6]}"
    config = campaign_config(name, controller, storage, trials, workers)
    lines = 0
    started = time.perf_counter()
    marks: list[tuple[int, float]] = [(0, time.thread_time())]  # the campaign runs on this thread

    def log(line: str) -> None:
        nonlocal lines
        progress = PROGRESS.match(line)
        if progress:
            marks.append((int(progress.group(1)), time.thread_time()))
        lines += 1
        if lines % 500 == 0:
            print(f"  {controller}/{storage_name}: {line} ({time.perf_counter() - started:.0f} s)", file=sys.stderr,
                  flush=True)

    campaign = Campaign(config, runs_dir, log=log, evaluate=instant_evaluation, recycle_after=recycle_after)
    try:
        with BlockedTime() as blocked:
            looped, looped_cpu = time.perf_counter(), time.thread_time()
            summary = campaign.run()
            loop_s, loop_cpu_s = time.perf_counter() - looped, time.thread_time() - looped_cpu
    finally:
        campaign.close()
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=campaign.storage_url)
    finished = sorted((t.datetime_complete.timestamp(), "reused_from" in t.user_attrs)
                      for t in study.get_trials(deepcopy=False)
                      if t.state.name == "COMPLETE" and t.datetime_complete is not None)
    done = [moment for moment, _ in finished]
    begin = min(t.datetime_start.timestamp() for t in study.get_trials(deepcopy=False) if t.datetime_start)
    rows = []
    for n in checkpoints:
        cumulative = done[n - 1] - begin if len(done) >= n else math.nan
        rows.append({"trials": n, "per_trial_ms_at_n": per_trial_ms(done, n),
                     "driver_ms_at_n": driver_ms_at(done, n, blocked.intervals),
                     "driver_cpu_ms_at_n": cpu_ms_at(marks, n),
                     "reused_at_n": sum(reused for _, reused in finished[window_start(n):n]),
                     "mean_ms_over_first_n": 1000 * cumulative / n, "cumulative_s": cumulative})
    first, last = rows[0], rows[-1]
    exponent = (math.log(last["cumulative_s"] / first["cumulative_s"]) / math.log(last["trials"] / first["trials"])
                if len(rows) > 1 and first["cumulative_s"] > 0 else math.nan)
    return {"controller": controller, "storage": storage_name, "finished": summary.finished, "wall_s": wall,
            "reused": summary.finished - summary.evaluated,  # proposals of an architecture already evaluated
            "driver_ms_per_trial": 1000 * (loop_s - blocked.seconds) / trials,
            "driver_cpu_ms_per_trial": 1000 * loop_cpu_s / trials, "recycle_after": recycle_after,
            "blocked_ms_per_trial": 1000 * blocked.seconds / trials,
            "checkpoints": rows, "growth_exponent": exponent,
            "growth_ratio": last["per_trial_ms_at_n"] / first["per_trial_ms_at_n"] if len(rows) > 1 else math.nan}


def alternating_medians(rounds: int, one_by_one: Callable[[], float], at_once: Callable[[], float]) -> dict[str, Any]:
    """Each way's median ms over ``rounds`` (each call returns one timed round), alternating which
    goes first; and their ratio."""
    timings: dict[str, list[float]] = {"one_by_one": [], "at_once": []}
    ways = {"one_by_one": one_by_one, "at_once": at_once}
    for round_ in range(rounds):
        for way in ("one_by_one", "at_once") if round_ % 2 == 0 else ("at_once", "one_by_one"):
            timings[way].append(ways[way]())
    one, once = statistics.median(timings["one_by_one"]), statistics.median(timings["at_once"])
    return {"rounds": rounds, "one_by_one_ms": one, "at_once_ms": once, "ratio": one / once}


def attribute_writes(url: str, attrs: int, rounds: int = 40) -> dict[str, Any]:
    """Storing ``attrs`` user attributes on a running trial: one commit each against one transaction."""
    study = optuna.create_study(storage=url, study_name=f"attrs-{uuid.uuid4().hex[:6]}")
    record = {f"attr_{index:02d}": index * 0.5 for index in range(attrs)}

    def timed(at_once: bool) -> float:
        trial = study.ask()
        started = time.perf_counter()
        if at_once:
            write_user_attrs(study, trial._trial_id, record)
        else:
            for key, value in record.items():
                trial.set_user_attr(key, value)
        elapsed = 1000 * (time.perf_counter() - started)
        study.tell(trial, 0.0)
        return elapsed

    return {"attrs": attrs, **alternating_medians(rounds, lambda: timed(False), lambda: timed(True))}


def parameter_writes(url: str, rounds: int = 40) -> dict[str, Any]:
    """Asking one trial of the MnasNet space's decisions (random values): one commit per decision
    against one transaction."""
    space = distributions(get_space("mnasnet"))
    study = optuna.create_study(storage=url, study_name=f"params-{uuid.uuid4().hex[:6]}",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def timed(at_once: bool) -> float:
        started = time.perf_counter()
        with params_in_one_transaction(study) if at_once else contextlib.nullcontext():
            trial = study.ask(space)
        elapsed = 1000 * (time.perf_counter() - started)
        study.tell(trial, 0.0)
        return elapsed

    return {"decisions": len(space), **alternating_medians(rounds, lambda: timed(False), lambda: timed(True))}


def postgres(url: str | None, folder: Path) -> tuple[str, Any]:
    """``url``, or a throwaway server's URL and the server (stop it when done)."""
    if url:
        return url, None
    from tests.support.postgres import PostgresServer  # the tests' throwaway server, reused

    (folder / "pg").mkdir()
    (folder / "pg").chmod(0o755)
    server = PostgresServer(folder / "pg" / "server")
    return server.start(), server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", default="100,1000,8000", help="checkpoints; one campaign runs to the largest")
    parser.add_argument("--controllers", default="rl,tpe")
    parser.add_argument("--storages", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (evaluations in flight)")
    parser.add_argument("--postgres-url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--recycle-after", default=str(RECYCLE_AFTER),
                        help=f"evaluations per Ray worker before it is replaced, or 'never' (default "
                             f"{RECYCLE_AFTER}, the campaign's); the instant evaluator holds no memory, and "
                             "with 'never' no worker's MindSpore import competes with the driver for the cores")
    parser.add_argument("--attrs", type=int, default=30,
                        help="user attributes per trial record in the side-by-side write comparison (default 30)")
    args = parser.parse_args(argv)
    if args.recycle_after != "never" and not (args.recycle_after.isdigit() and int(args.recycle_after) >= 1):
        parser.error(f"--recycle-after: a positive number of evaluations or 'never' (got {args.recycle_after!r})")
    recycle_after = None if args.recycle_after == "never" else int(args.recycle_after)
    checkpoints = sorted(int(n) for n in args.trials.split(","))
    storages = args.storages.split(",")
    folder = Path(tempfile.mkdtemp(prefix="nas-bench-driver-"))
    folder.chmod(0o755)
    server = None
    results = []
    writes: dict[str, dict[str, Any]] = {}
    asks: dict[str, dict[str, Any]] = {}
    try:
        urls: dict[str, str | None] = {"sqlite": None}
        if "postgresql" in storages:
            urls["postgresql"], server = postgres(args.postgres_url, folder)
        for storage in storages:
            url = urls[storage] or f"sqlite:///{folder / 'attrs.db'}"
            writes[storage] = attribute_writes(url, args.attrs)
            asks[storage] = parameter_writes(url)
        for controller in args.controllers.split(","):
            for storage in storages:
                print(f"{controller} on {storage}: {max(checkpoints)} trials ...", file=sys.stderr, flush=True)
                results.append(run_one(controller, storage, urls[storage], checkpoints, args.workers,
                                       folder / "runs", recycle_after))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"workers replaced after {args.recycle_after} evaluations")
    print("| controller | storage | trials n | ms per trial at n | the driver's own ms per trial at n | "
          "its CPU ms per trial at n | reused at n | mean ms over first n | cumulative s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        for row in result["checkpoints"]:
            window = row["trials"] - window_start(row["trials"])
            print(f"| {result['controller']} | {result['storage']} | {row['trials']} | "
                  f"{row['per_trial_ms_at_n']:.1f} | {row['driver_ms_at_n']:.1f} | {row['driver_cpu_ms_at_n']:.1f} | "
                  f"{row['reused_at_n']} of {window} | {row['mean_ms_over_first_n']:.1f} | {row['cumulative_s']:.1f} |")
    for result in results:
        print(f"{result['controller']}/{result['storage']}: the driver's own "
              f"{result['driver_ms_per_trial']:.1f} ms per trial ({result['driver_cpu_ms_per_trial']:.1f} ms of its "
              f"thread's CPU; blocked on workers "
              f"{result['blocked_ms_per_trial']:.1f} ms); growth exponent {result['growth_exponent']:.2f} "
              f"(1.0 = linear), per-trial cost {result['growth_ratio']:.2f}x from {checkpoints[0]} to "
              f"{checkpoints[-1]}; {result['reused']} of {result['finished']} trials repeated an architecture "
              f"(result reused); wall {result['wall_s']:.0f} s")
    for storage, row in writes.items():
        print(f"{storage}: a record of {row['attrs']} attributes stored one commit each {row['one_by_one_ms']:.1f} ms, "
              f"in one transaction {row['at_once_ms']:.1f} ms: {row['ratio']:.1f}x (medians of {row['rounds']}, "
              "alternating)")
    for storage, row in asks.items():
        print(f"{storage}: an ask of {row['decisions']} decisions, one commit each {row['one_by_one_ms']:.1f} ms, "
              f"in one transaction {row['at_once_ms']:.1f} ms: {row['ratio']:.1f}x (medians of {row['rounds']}, "
              "alternating)")
    write_report("driver", {"checkpoints": checkpoints, "workers": args.workers, "recycle_after": recycle_after,
                            "results": results,
                            "attribute_writes": writes, "asks": asks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
