"""The NetAdapt loop: measure, propose, fine-tune on Ray, select, measure again; then a long-term
fine-tune. Resumable after every finished iteration.

Output directory::

    config.yaml                    the resolved settings and the inputs (spec, checkpoint digest, data)
    state.json                     the last finished iteration and where its network is
    seed/spec.yaml, model.ckpt     the input network (classes and resolution as run)
    iterations/0003/spec.yaml      the network chosen by iteration 3 (model.ckpt beside it)
    iterations/0004/proposals/     the proposals of an unfinished iteration (kept for a resume)
    history.csv, history.parquet   every proposal of every finished iteration (netadapt.history)
    final/spec.yaml, model.ckpt    the result after the long-term fine-tune
    summary.json                   seed / last iteration / final: latency_ms with its interval's upper end, top-1
    lut/                           the look-up table, when none was given

A run killed mid-iteration resumes (``resume=True``) from the last finished iteration; proposals
of the unfinished one that were already fine-tuned are reused, not retrained.

**Latency the loop goes by.** The seed is measured once at the start (``L0``). Every chosen network
is then measured back to back with the seed, in one worker (``latency_repeats`` pairs, the median
ratio counts), and its latency is taken as ``L0 * chosen / seed`` (``latency_ms`` in the history;
the raw measurements are kept beside it):
a change of load or clock between iterations cancels out, and a budget ratio means "this fraction
of the seed's time, measured side by side". The loop stops when that measured latency meets the
budget at the upper end of its 95% interval (the paired protocol's; the latency is scaled by the
measurement's relative upper bound), so a network is accepted only when it meets the budget
beyond reasonable doubt, not by a lucky measurement.

**Constraints live on the estimates' scale.** Proposals are estimated with
``netadapt.estimates.PooledEstimate`` (prediction times the run's median measured / predicted
ratio), so an iteration's constraint is the *current network's estimate* minus the scheduled
reduction, never its measurement minus it (the two scales differ by the current network's own
measurement noise). The constraint never goes below the budget shrunk by the current
measurement's relative interval, which is where a network must land to meet the budget at the
upper end of its own interval.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mindspore as ms
import yaml

from latency.config import LatencyConfig, make_backend
from latency.errors import StampMismatchError
from latency.lut import LatencyLUT
from latency.predictor import has_predictor, load_predictor
from nas.models.builder import build_network
from nas.models.checkpoint import CheckpointError, load_weights, save_weights
from nas.spec.arch import ArchSpec
from nas.spec.errors import NasError
from nas.training.config import DataConfig, TrainConfig
from nas.training.data import Data, open_data
from nas.training.engine import Trainer, evaluate, set_execution_mode
from netadapt.algorithm import Candidate, select
from netadapt.channels import widths_text
from netadapt.config import RESUMABLE, NetAdaptConfig, read_saved_config
from netadapt.errors import BudgetUnreachableError, NoisyLatencyError, NothingToDoError, ResumeError
from netadapt.estimates import (
    BackendMeter,
    LatencyMeter,
    LatencyPredictor,
    LUTPredictor,
    Measurement,
    PooledEstimate,
    build_netadapt_lut,
)
from netadapt.history import STAMP_NAME, History
from netadapt.proposals import Proposal, propose, targets
from netadapt.worker import EpochShift, ProposalJob, ProposalOutcome, epochs_per_iteration, make_runner

STATE = "state.json"


def _truthy(value: Any) -> bool:
    """A history flag read back from CSV (a bool, numpy's bool, or NaN where the row had none)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and bool(value)
RELAXATIONS = 8  # halvings of an iteration's reduction before the budget counts as unreachable
FORMAT = "nas-netadapt"


@dataclass(frozen=True)
class NetworkState:
    """A network of the run: where it is, its measured and predicted latency, its accuracy."""

    iteration: int
    spec_path: str
    ckpt_path: str
    latency_ms: float  # L0 * measured / seed measured beside it (see the module docstring)
    measured_ms: float
    seed_measured_ms: float
    p10_ms: float
    p90_ms: float
    predicted_ms: float
    top1: float
    latency_high_ms: float = math.nan  # the upper end of latency_ms's ~95% interval (nan: none known)

    @property
    def latency_upper_ms(self) -> float:
        """What the budget is checked against: the interval's upper end where there is one."""
        return self.latency_high_ms if math.isfinite(self.latency_high_ms) else self.latency_ms


@dataclass(frozen=True)
class FinalState:
    """The network after the long-term fine-tune, measured beside the seed."""

    iteration: int
    long_term_epochs: int
    measured_ms: float
    measured_p10_ms: float
    measured_p90_ms: float
    predicted_ms: float
    top1: float
    validation_top1: float
    arch_id: str
    widths: str
    seed_measured_ms: float
    latency_ms: float
    speedup_measured: float
    latency_high_ms: float = math.nan  # the upper end of latency_ms's 95% interval (nan: a state written before it)

    @property
    def upper_ms(self) -> float:
        return self.latency_high_ms if math.isfinite(self.latency_high_ms) else self.latency_ms


@dataclass(frozen=True)
class RunState:
    """``state.json``: the run's budget and starting point, the network of the last finished
    iteration, and the final network once there is one."""

    initial_ms: float
    budget_ms: float
    initial_top1: float
    status: str  # pruning | budget_met | max_iters
    current: NetworkState
    final: FinalState | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "RunState":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ResumeError(f"{where} is not a NetAdapt state file (format {FORMAT!r} expected)")
        try:
            final = data.get("final")
            return cls(initial_ms=float(data["initial_ms"]), budget_ms=float(data["budget_ms"]),
                       initial_top1=float(data["initial_top1"]), status=str(data["status"]),
                       current=NetworkState(**data["current"]), final=FinalState(**final) if final else None)
        except (KeyError, TypeError, ValueError) as error:
            raise ResumeError(f"{where} is unreadable: {error}") from None


@dataclass(frozen=True)
class NetAdaptResult:
    out_dir: Path
    status: str  # budget_met | max_iters
    iterations: int
    budget_ms: float
    initial_ms: float
    final_measured_ms: float
    final_predicted_ms: float
    initial_top1: float
    final_top1: float
    spec_path: Path
    ckpt_path: Path
    last_iteration_ms: float  # the upper end of the last iteration's measured latency interval
    speedup: float
    final_upper_ms: float = math.nan  # the upper end of the final network's measured interval

    @property
    def upper_ms(self) -> float:
        """The upper end of the final network's measured interval (its estimate without one)."""
        return self.final_upper_ms if math.isfinite(self.final_upper_ms) else self.final_measured_ms

    @property
    def faster(self) -> bool:
        """Whether the final network is faster than the seed at the upper end of its own interval."""
        return self.upper_ms < self.initial_ms

    def describe(self) -> str:
        upper = self.upper_ms
        met = "met" if upper <= self.budget_ms else "NOT met"  # by the one figure printed, at its upper end
        return (f"{self.status} after {self.iterations} iteration(s): latency {self.initial_ms:.3f} -> "
                f"{self.final_measured_ms:.3f} ms measured beside the seed (95% interval up to {upper:.3f} ms; "
                f"{self.speedup:.2f}x; {self.final_predicted_ms:.3f} ms predicted), budget {self.budget_ms:.3f} ms "
                f"{met}; held-out top1 {self.initial_top1:.4f} -> {self.final_top1:.4f}")

    def failure(self) -> str | None:
        """Why the run did not succeed (a final network no faster than the seed), or None."""
        if self.faster:
            return None
        return (f"the final network is not faster than the seed: {self.final_measured_ms:.3f} ms measured beside it "
                f"(95% interval up to {self.upper_ms:.3f} ms) against the seed's {self.initial_ms:.3f} ms; the "
                f"measurements are noisier than the pruning, so measure on a quiet machine (--latency-repeats) or "
                f"prune further (--budget-ratio, --max-iters)")


def _summary(state: RunState, current: NetworkState, final: FinalState) -> dict[str, Any]:
    """``summary.json``: one latency figure per network, ``latency_ms`` (the loop's: measured beside
    the seed, on the seed's scale) with the upper end of its 95% interval, ``latency_high_ms``. The
    raw medians those figures were derived from are kept, prefixed ``raw_``, for diagnosis only."""
    return {"status": state.status, "iterations": current.iteration, "budget_ms": state.budget_ms,
            "seed": {"latency_ms": state.initial_ms, "top1": state.initial_top1},
            "last_iteration": {"iteration": current.iteration, "latency_ms": current.latency_ms,
                               "latency_high_ms": current.latency_upper_ms, "top1": current.top1},
            "final": {"iteration": final.iteration, "long_term_epochs": final.long_term_epochs,
                      "latency_ms": final.latency_ms, "latency_high_ms": final.upper_ms,
                      "speedup": final.speedup_measured, "predicted_ms": final.predicted_ms, "top1": final.top1,
                      "validation_top1": final.validation_top1, "arch_id": final.arch_id, "widths": final.widths,
                      "raw_median_ms": final.measured_ms, "raw_p10_ms": final.measured_p10_ms,
                      "raw_p90_ms": final.measured_p90_ms, "raw_seed_median_ms": final.seed_measured_ms},
            "budget_met_by_measurement": current.latency_upper_ms <= state.budget_ms,
            "faster_than_seed": final.upper_ms < state.initial_ms}


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=float))
    os.replace(temporary, path)


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


class NetAdapt:
    """One NetAdapt run into ``out_dir``.

    ``predictor`` estimates latency (default: the look-up table in ``lut_dir``, or one built in
    ``<out_dir>/lut``); ``meter`` measures it (default: ``latency.make_backend``'s backend).
    """

    def __init__(self, config: NetAdaptConfig, out_dir: str | Path, *, predictor: LatencyPredictor | None = None,
                 meter: LatencyMeter | None = None, lut_dir: str | Path | None = None, ray_address: str | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = Path(out_dir)
        self.predictor = predictor
        self.meter = meter
        self.lut_dir = Path(lut_dir) if lut_dir is not None else None
        if config.latency_address is not None and ray_address is not None and config.latency_address != ray_address:
            raise NasError(f"netadapt.latency_address {config.latency_address!r} and --ray-address {ray_address!r} "
                           "differ: one process joins one Ray cluster; give the same address or drop one")
        self.ray_address = ray_address
        self.log = log
        self.history = History(self.out)

    # ----- inputs and the output directory ---------------------------------------------------------

    def _latency_resolution(self, spec: ArchSpec) -> int:
        return self.config.latency_resolution or spec.resolution

    def _make_meter(self, spec: ArchSpec) -> LatencyMeter:
        settings = LatencyConfig(device=self.config.device, batch=self.config.latency_batch,
                                 resolution=self._latency_resolution(spec), threads=self.config.latency_threads,
                                 address=self.config.latency_address, runtime=self.config.latency_runtime,
                                 cache=False)
        return BackendMeter(make_backend(settings))

    def _make_predictor(self, spec: ArchSpec) -> LatencyPredictor:
        resolution = self._latency_resolution(spec)
        if self.lut_dir is not None and has_predictor(self.lut_dir):
            fitted = load_predictor(self.lut_dir)
            if fitted.resolution != resolution:
                raise NasError(f"the latency predictor in {str(self.lut_dir)!r} predicts at {fitted.resolution} px, "
                               f"but latency is measured at {resolution} px here (--latency-resolution)")
            backend = getattr(self.meter, "backend", None)
            if backend is not None and hasattr(backend, "stamp"):
                fitted.require(backend.stamp(resolution=resolution))
            return fitted
        if self.lut_dir is not None:
            lut = LatencyLUT(self.lut_dir)
            if lut.resolution != resolution:
                raise NasError(f"look-up table {str(self.lut_dir)!r} was measured at {lut.resolution} px, but latency "
                               f"is measured at {resolution} px here (--latency-resolution)")
            self._check_stamp(lut, resolution)
            return LUTPredictor(lut)
        backend = getattr(self.meter, "backend", None)
        if backend is None or not hasattr(backend, "measure_pieces"):
            raise NasError("no look-up table given (--lut) and the latency meter cannot measure pieces to build one")
        lut = build_netadapt_lut(self.out / "lut", spec, backend, step=self.config.step_multiple,
                                 options=self.config.target_options(), grid_step=self.config.lut_grid_step,
                                 calibration=self.config.lut_calibration, seed=self.config.seed, log=self.log)
        return LUTPredictor(lut)

    def _check_stamp(self, lut: LatencyLUT, resolution: int) -> None:
        """A table measured under another stamp (runtime, threads, batch, machine) predicts another
        device's relative changes: refuse it, naming both stamps."""
        backend = getattr(self.meter, "backend", None)
        if backend is None or not hasattr(backend, "stamp"):
            return  # a meter without a stamp (a caller's own): nothing to compare
        stamp = backend.stamp(resolution=resolution)
        if stamp.key != lut.stamp.key:
            raise StampMismatchError(f"look-up table {str(self.lut_dir)!r} was measured under stamp [{lut.stamp.key}], "
                                     f"but latency is measured under [{stamp.key}] here; build the table with the "
                                     "same settings (runtime, threads, batch) or leave out --lut")

    def _data_config(self, spec: ArchSpec, source: str) -> DataConfig:
        return DataConfig(source=source, resolution=spec.resolution, held_out=self.config.held_out,
                          seed=self.config.seed)

    def _prepare_seed(self, spec: ArchSpec, ckpt: Path, data: Any) -> tuple[ArchSpec, Path]:
        """Check the checkpoint against the spec and the data; write ``seed/``."""
        if self.config.resolution is not None:
            spec = spec.replace(resolution=self.config.resolution)
        if spec.num_classes != data.num_classes:
            raise NasError(f"the spec's classifier has {spec.num_classes} classes but the data has {data.num_classes}; "
                           "NetAdapt fine-tunes a model trained on this data")
        net = build_network(spec)
        load_weights(net, ckpt)  # CheckpointError names the first mismatch
        seed_dir = self.out / "seed"
        seed_dir.mkdir(parents=True, exist_ok=True)
        (seed_dir / "spec.yaml").write_text(spec.to_yaml())
        return spec, save_weights(net, seed_dir / "model.ckpt", spec)

    def _check_resume(self, inputs: dict[str, Any], resume: bool) -> RunState | None:
        state_path = self.out / STATE
        if not resume:
            if state_path.exists():
                raise ResumeError(f"{str(self.out)!r} already holds a NetAdapt run; pass --resume to continue it "
                                  "or choose another -o")
            return None
        if not state_path.exists():
            raise ResumeError(f"--resume: {str(self.out)!r} holds no NetAdapt run ({STATE} not found)")
        saved = read_saved_config(self.out / "config.yaml")
        previous = NetAdaptConfig.from_dict(saved["netadapt"])
        changed = previous.differences(self.config)
        if changed:
            name = changed[0]
            raise ResumeError(f"--resume: {name} was {getattr(previous, name)!r}, now {getattr(self.config, name)!r}; "
                              f"a resumed run keeps its settings (only {', '.join(RESUMABLE)} may change)")
        for key in ("arch_id", "ckpt_sha256", "data"):
            if saved["inputs"].get(key) != inputs.get(key):
                raise ResumeError(f"--resume: the input {key} differs from the run in {str(self.out)!r} "
                                  f"({saved['inputs'].get(key)!r} vs {inputs.get(key)!r})")
        try:
            return RunState.from_dict(json.loads(state_path.read_text()), str(state_path))
        except ValueError as error:  # not JSON
            raise ResumeError(f"{state_path} is unreadable: {error}") from None

    def _save_state(self, state: RunState) -> None:
        _write_json(self.out / STATE, state.to_dict())

    # ----- the run -----------------------------------------------------------------------------------

    def run(self, spec: ArchSpec, ckpt: str | Path, data_source: str, *, resume: bool = False) -> NetAdaptResult:
        """Prune ``spec`` (weights in ``ckpt``) until it meets the budget or ``max_iters``; then fine-tune."""
        ckpt = Path(ckpt)
        if not ckpt.is_file():
            raise CheckpointError(f"checkpoint {str(ckpt)!r} not found")
        if self.config.resolution is not None:
            spec = spec.replace(resolution=self.config.resolution)
        inputs = {"arch_id": spec.arch_id, "spec_name": spec.name, "ckpt": str(ckpt), "ckpt_sha256": _digest(ckpt),
                  "data": data_source}
        state = self._check_resume(inputs, resume)
        data = open_data(self._data_config(spec, data_source))
        if self.meter is None:
            self.meter = self._make_meter(spec)
        if state is None:
            state = self._start(spec, ckpt, data, inputs)
        else:
            self.log(f"resuming {self.out} after iteration {state.current.iteration}")
            self.history.truncate(state.current.iteration)
            if self.predictor is None:  # the table covers the grid around the seed network
                self.predictor = self._make_predictor(ArchSpec.from_yaml(self.out / "seed" / "spec.yaml"))
        return self._loop(state, data)

    def _start(self, spec: ArchSpec, ckpt: Path, data: Data, inputs: dict[str, Any]) -> RunState:
        self.out.mkdir(parents=True, exist_ok=True)
        self.history.rows = []
        spec, seed_ckpt = self._prepare_seed(spec, ckpt, data)
        if self.predictor is None and self.lut_dir is not None:  # a given table is checked before measuring
            self.predictor = self._make_predictor(spec)
        initial = self.meter.measure(spec)
        budget = (self.config.budget_ms if self.config.budget_ms is not None
                  else self.config.budget_ratio * initial.median_ms)
        if initial.median_ms <= budget:
            raise NothingToDoError(f"nothing to do: the network already meets the budget ({initial.median_ms:.3f} ms "
                                   f"measured <= {budget:.3f} ms)")
        # A given table's miss stops the run before the noise check; a table to build waits for it.
        predicted = float(self.predictor.predict(spec)) if self.predictor is not None else math.nan
        step = self.config.schedule_rule().reduction(1, initial.median_ms)
        spread = initial.median_ms * (initial.high_ratio - 1.0)
        if spread > step:  # each iteration's gain would be lost in the measurement noise
            flag = "--fixed-ratio" if self.config.schedule == "fixed" else "--initial-ratio"
            raise NoisyLatencyError(
                f"the seed measured {initial.median_ms:.3f} ms with a 95% interval up to {initial.ci_high_ms:.3f} ms "
                f"(+{spread / initial.median_ms:.1%}), wider than the {step:.3f} ms "
                f"({step / initial.median_ms:.1%}) the first iteration removes; measure on a quiet machine, or "
                f"take larger steps ({flag})")
        if self.predictor is None:
            self.predictor = self._make_predictor(spec)
            predicted = float(self.predictor.predict(spec))
        top1 = self._evaluate(spec, seed_ckpt, data)
        (self.out / "config.yaml").write_text(yaml.safe_dump({"netadapt": self.config.to_dict(), "inputs": inputs},
                                                             sort_keys=False))
        backend = getattr(self.meter, "backend", None)
        if backend is not None and hasattr(backend, "stamp"):  # what plots check before overlaying runs
            stamp = backend.stamp(resolution=self._latency_resolution(spec))
            _write_json(self.out / STAMP_NAME, stamp.to_dict())
        current = NetworkState(0, "seed/spec.yaml", "seed/model.ckpt", initial.median_ms, initial.median_ms,
                               initial.median_ms, initial.p10_ms, initial.p90_ms, predicted, top1,
                               initial.median_ms * initial.high_ratio)
        self.history.add([{"iteration": 0, "target": "seed", "kind": "seed", "widths": widths_text(spec),
                           "arch_id": spec.arch_id, "predicted_ms": predicted, "estimated_ms": initial.median_ms,
                           "top1": top1, "status": "ok", "chosen": True, "measured_ms": initial.median_ms,
                           "measured_p10_ms": initial.p10_ms, "measured_p90_ms": initial.p90_ms,
                           "seed_measured_ms": initial.median_ms, "latency_ms": initial.median_ms,
                           "latency_high_ms": initial.median_ms * initial.high_ratio}])
        self.history.save()
        state = RunState(initial_ms=initial.median_ms, budget_ms=budget, initial_top1=top1, status="pruning",
                         current=current)
        self._save_state(state)
        self.log(f"seed {spec.name}: {initial.median_ms:.3f} ms measured ({predicted:.3f} ms predicted), held-out "
                 f"top1 {top1:.4f}; budget {budget:.3f} ms")
        return state

    def _measure_beside_seed(self, spec: ArchSpec, initial_ms: float) -> tuple[float, Measurement, float]:
        """``(latency, measurement, seed measurement)``: ``spec`` measured back to back with the seed,
        ``latency_repeats`` pairs in one worker; the pair with the median ratio counts."""
        seed_spec = ArchSpec.from_yaml(self.out / "seed" / "spec.yaml")
        if not hasattr(self.meter, "measure_many"):
            measured = self.meter.measure(spec)
            return measured.median_ms, measured, math.nan
        repeats = self.config.latency_repeats
        results = self.meter.measure_many([seed_spec, spec] * repeats)
        pairs = [(results[2 * i], results[2 * i + 1]) for i in range(repeats)]
        ratios = [measured.median_ms / seed_now.median_ms for seed_now, measured in pairs]
        middle = sorted(range(repeats), key=lambda i: ratios[i])[repeats // 2]
        seed_now, measured = pairs[middle]
        return initial_ms * ratios[middle], measured, seed_now.median_ms

    def _evaluate(self, spec: ArchSpec, ckpt: Path, data: Data) -> float:
        set_execution_mode("graph")
        net = build_network(spec)
        load_weights(net, ckpt)
        return evaluate(net, data.held_out(self.config.eval_batch), device_lock=self.config.device).top1

    def _loop(self, state: RunState, data: Data) -> NetAdaptResult:
        budget = state.budget_ms
        current = state.current
        run, close = (None, None)
        try:
            while current.latency_upper_ms > budget and current.iteration < self.config.max_iters:
                if run is None:
                    run, close = make_runner(self.config.workers, self.ray_address)
                current = self._iteration(current.iteration + 1, current, state, data, run)
                state = dataclasses.replace(state, current=current)
                self._save_state(state)
        finally:
            if close is not None:
                close()
        met = current.latency_upper_ms <= budget
        state = dataclasses.replace(state, status="budget_met" if met else "max_iters")
        if not met:
            self.log(f"budget {budget:.3f} ms not met after {current.iteration} iteration(s) "
                     f"({current.latency_ms:.3f} ms measured, {current.latency_upper_ms:.3f} ms at the upper end of "
                     f"its 95% interval); raise --max-iters and --resume to continue")
        self._save_state(state)
        return self._finish(state, current, data)

    # ----- one iteration ------------------------------------------------------------------------------

    def _measured_pairs(self, current: NetworkState) -> list[tuple[float, float]]:
        """``(measured, predicted)`` of every network measured so far in the run: the seed and
        the network each finished iteration chose (the current one last)."""
        pairs = [(float(row["latency_ms"]), float(row["predicted_ms"])) for row in self.history.rows
                 if _truthy(row.get("chosen")) and int(row["iteration"]) < current.iteration]
        return [*pairs, (current.latency_ms, current.predicted_ms)]

    def _proposals(self, iteration: int, current: NetworkState, spec: ArchSpec,
                   state: RunState) -> tuple[list[Proposal], float, bool, float]:
        """The proposals of an iteration: every target at the largest width whose estimate meets
        the constraint. Where no target can remove the scheduled reduction on its own, the
        reduction is halved (at most :data:`RELAXATIONS` times, marked ``relaxed``); where no
        target can shrink the network at all, the budget is unreachable. The last item is the
        current network's own estimate, the scale the constraint and the proposals' estimates share."""
        config = self.config
        schedule = config.schedule_rule()
        reduction = schedule.reduction(iteration, state.initial_ms)
        estimate = PooledEstimate(self.predictor, self._measured_pairs(current))
        current_estimate = estimate(spec)[1]
        # The last step aims below the budget by the current measurement's relative interval, so that
        # the network it lands on can meet the budget at the upper end of its own interval.
        floor = state.budget_ms * current.latency_ms / current.latency_upper_ms
        chosen_targets = targets(spec, config.target_options())
        for relaxation in range(RELAXATIONS + 1):
            step = reduction / 2 ** relaxation
            constraint = current_estimate - step
            if floor < current_estimate:
                constraint = max(constraint, floor)
            if not (step > 0 and constraint < current_estimate):
                raise BudgetUnreachableError(
                    f"iteration {iteration}: the schedule's reduction ({step:.3g} ms) leaves nothing to remove from "
                    f"{current_estimate:.3f} ms; use a larger --fixed-ratio or schedule")
            found = [propose(spec, target, constraint, estimate, config.step_multiple, config.min_width)[0]
                     for target in chosen_targets]
            proposals = [proposal for proposal in found if proposal is not None]
            if proposals:
                if relaxation:
                    self.log(f"iteration {iteration}: no target removes {reduction:.3f} ms on its own; "
                             f"constraint relaxed to {constraint:.3f} ms")
                return proposals, constraint, relaxation > 0, current_estimate
        raise BudgetUnreachableError(
            f"budget unreachable: no proposal can shrink the network below {current.latency_ms:.3f} ms measured "
            f"(budget {state.budget_ms:.3f} ms, widths in steps of {config.step_multiple}); the last network is "
            f"{self.out / current.ckpt_path}")

    def _iteration(self, iteration: int, current: NetworkState, state: RunState, data: Data,
                   run: Callable) -> NetworkState:
        started = time.perf_counter()
        spec = ArchSpec.from_yaml(self.out / current.spec_path)
        proposals, constraint, relaxed, current_estimate = self._proposals(iteration, current, spec, state)
        folder = self.out / "iterations" / f"{iteration:04d}"
        pending_dir = folder / "proposals"
        pending_dir.mkdir(parents=True, exist_ok=True)
        short = self.config.short_term
        cores = os.cpu_count() or 1
        threads = max(1, cores // max(1, min(self.config.workers, len(proposals))))
        job_seed = self.config.seed * 100003 + iteration
        outcomes: dict[str, ProposalOutcome] = {}
        jobs = []
        for proposal in proposals:
            name = _safe(proposal.key)
            record = pending_dir / f"{name}.json"
            if record.exists():  # fine-tuned before an interruption; a failure is tried again
                saved = json.loads(record.read_text())
                if saved.get("arch_id") == proposal.spec.arch_id and saved.get("parent") == spec.arch_id and (
                        saved["outcome"]["ckpt"] and Path(saved["outcome"]["ckpt"]).exists()):
                    outcomes[proposal.key] = ProposalOutcome(**saved["outcome"])
                    continue
            jobs.append(ProposalJob(key=proposal.key, parent_spec=spec.to_yaml(),
                                    parent_ckpt=str(self.out / current.ckpt_path), spec=proposal.spec.to_yaml(),
                                    out_ckpt=str(pending_dir / f"{name}.ckpt"), data=data.config, train=short,
                                    steps=self.config.short_term_steps, eval_batch=self.config.eval_batch,
                                    seed=job_seed, first_epoch=(iteration - 1) * self._epochs_per_iteration(data),
                                    device=self.config.device, threads=threads,
                                    mode=self.config.proposal_mode()))
        if outcomes:
            self.log(f"iteration {iteration}: reusing {len(outcomes)} proposal(s) fine-tuned before the interruption")
        by_key = {p.key: p for p in proposals}
        for outcome in run(jobs):
            outcomes[outcome.key] = outcome
            _write_json(pending_dir / f"{_safe(outcome.key)}.json",
                        {"arch_id": by_key[outcome.key].spec.arch_id, "parent": spec.arch_id,
                         "outcome": outcome.to_dict()})
            status = f"top1 {outcome.top1:.4f}" if outcome.ok else f"failed: {outcome.error}"
            memory = f", peak {outcome.peak_rss_mb:.0f} MiB" if outcome.peak_rss_mb is not None else ""
            memory += f"; {outcome.split()}" if outcome.split() else ""
            self.log(f"  {outcome.key}: {by_key[outcome.key].width_before} -> {by_key[outcome.key].width}, "
                     f"est {by_key[outcome.key].estimated_ms:.3f} ms, {status} ({outcome.seconds:.1f} s{memory})")
        ordered = [(p, outcomes[p.key]) for p in proposals]
        usable = [(p, o) for p, o in ordered if o.ok]
        if not usable:
            raise NasError(f"iteration {iteration}: every proposal failed; first: {ordered[0][1].error}")
        candidates = [Candidate(p.key, o.top1, p.estimated_ms) for p, o in usable]
        chosen, outcome = usable[select(candidates, current.top1, current_estimate, self.config.selection)]
        latency, measured, seed_measured = self._measure_beside_seed(chosen.spec, state.initial_ms)
        (folder / "spec.yaml").write_text(chosen.spec.to_yaml())
        shutil.copyfile(outcome.ckpt, folder / "model.ckpt")
        rows = []
        for proposal, result in ordered:
            row = {"iteration": iteration, "target": proposal.key, "kind": proposal.target.kind,
                   "width_before": proposal.width_before, "width": proposal.width,
                   "widths": widths_text(proposal.spec), "arch_id": proposal.spec.arch_id,
                   "constraint_ms": constraint, "predicted_ms": proposal.predicted_ms,
                   "estimated_ms": proposal.estimated_ms, "relaxed": relaxed, "top1": result.top1, "top5": result.top5,
                   "loss": result.loss, "train_loss": result.train_loss, "finetune_s": result.seconds,
                   "setup_s": result.setup_s, "compile_s": result.compile_s, "steps_s": result.steps_s,
                   "eval_s": result.eval_s,
                   "peak_rss_mb": math.nan if result.peak_rss_mb is None else result.peak_rss_mb,
                   "status": "ok" if result.ok else "failed", "error": result.error or "",
                   "chosen": proposal is chosen}
            if proposal is chosen:
                row.update(measured_ms=measured.median_ms, measured_p10_ms=measured.p10_ms,
                           measured_p90_ms=measured.p90_ms, seed_measured_ms=seed_measured, latency_ms=latency,
                           latency_high_ms=latency * measured.high_ratio,
                           iteration_s=time.perf_counter() - started)
            rows.append(row)
        self.history.add(rows)
        self.history.save()
        shutil.rmtree(pending_dir, ignore_errors=True)
        self.log(f"iteration {iteration}: constraint {constraint:.3f} ms, {len(proposals)} proposals; chose "
                 f"{chosen.key} {chosen.width_before} -> {chosen.width}: top1 {outcome.top1:.4f}, "
                 f"{chosen.estimated_ms:.3f} ms estimated, {latency:.3f} ms measured "
                 f"({time.perf_counter() - started:.0f} s)")
        return NetworkState(iteration, str(Path("iterations") / f"{iteration:04d}" / "spec.yaml"),
                            str(Path("iterations") / f"{iteration:04d}" / "model.ckpt"), latency, measured.median_ms,
                            seed_measured, measured.p10_ms, measured.p90_ms, chosen.predicted_ms, outcome.top1,
                            latency * measured.high_ratio)

    # ----- the end ------------------------------------------------------------------------------------

    def _finish(self, state: RunState, current: NetworkState, data: Data) -> NetAdaptResult:
        spec = ArchSpec.from_yaml(self.out / current.spec_path)
        seed_name = ArchSpec.from_yaml(self.out / "seed" / "spec.yaml").name
        spec = spec.replace(name=f"{seed_name}_netadapt{current.iteration}")
        final_dir = self.out / "final"
        final = state.final
        if final is None or final.iteration != current.iteration or \
                final.long_term_epochs != self.config.long_term_epochs:
            final_dir.mkdir(parents=True, exist_ok=True)
            top1, validation = self._long_term(spec, self.out / current.ckpt_path, data, final_dir / "model.ckpt")
            (final_dir / "spec.yaml").write_text(spec.to_yaml())
            # The seed and the result measured back to back: a paired speed-up, whatever the load.
            latency, measured, seed_measured = self._measure_beside_seed(spec, state.initial_ms)
            predicted = float(self.predictor.predict(spec)) if self.predictor is not None else math.nan
            final = FinalState(iteration=current.iteration, long_term_epochs=self.config.long_term_epochs,
                               measured_ms=measured.median_ms, measured_p10_ms=measured.p10_ms,
                               measured_p90_ms=measured.p90_ms, predicted_ms=predicted, top1=top1,
                               validation_top1=validation, arch_id=spec.arch_id, widths=widths_text(spec),
                               seed_measured_ms=seed_measured, latency_ms=latency,
                               speedup_measured=state.initial_ms / latency,
                               latency_high_ms=latency * measured.high_ratio)
            state = dataclasses.replace(state, final=final)
            self._save_state(state)
        summary = _summary(state, current, final)
        _write_json(self.out / "summary.json", summary)
        result = NetAdaptResult(self.out, state.status, current.iteration, state.budget_ms, state.initial_ms,
                                final.latency_ms, final.predicted_ms, state.initial_top1, final.top1,
                                final_dir / "spec.yaml", final_dir / "model.ckpt", current.latency_upper_ms,
                                final.speedup_measured, final.upper_ms)
        self.log(result.describe())
        return result

    def _epochs_per_iteration(self, data: Data) -> int:
        return epochs_per_iteration(data, self.config.short_term_steps, self.config.short_term.batch_size)

    def _long_term(self, spec: ArchSpec, ckpt: Path, data: Data, out_ckpt: Path) -> tuple[float, float]:
        first = (self.config.max_iters + 1) * self._epochs_per_iteration(data)
        return long_term_fine_tune(spec, ckpt, data, self.config, out_ckpt, first_epoch=first, log=self.log)


def long_term_fine_tune(spec: ArchSpec, ckpt: str | Path, data: Data, config: NetAdaptConfig, out_ckpt: str | Path, *,
                        first_epoch: int = 0, log: Callable[[str], None] = print) -> tuple[float, float]:
    """Fine-tune ``ckpt`` with ``config.long_term`` (none when it is None), save it to ``out_ckpt``;
    return held-out and validation top-1. The device lock is held shared per step."""
    set_execution_mode("graph")
    device = config.device
    ms.set_seed(config.seed)
    net = build_network(spec)
    load_weights(net, ckpt)
    recipe: TrainConfig | None = config.long_term
    if recipe is not None:
        recipe = recipe.replace(seed=config.seed)
        trainer = Trainer(net, recipe, data.steps_per_epoch(recipe.batch_size), device_lock=device)
        shifted = EpochShift(data, first_epoch)
        for entry in trainer.fit(lambda epoch: shifted.train(recipe.batch_size, epoch=epoch)):
            log(f"long-term fine-tune epoch {entry.epoch}/{recipe.epochs}: loss {entry.loss:.4f}")
    held_out = evaluate(net, data.held_out(config.eval_batch), device_lock=device).top1
    validation = evaluate(net, data.validation(config.eval_batch), device_lock=device).top1
    save_weights(net, out_ckpt, spec)
    return held_out, validation


def run_netadapt(spec: ArchSpec, ckpt: str | Path, data_source: str, out_dir: str | Path, config: NetAdaptConfig, *,
                 lut_dir: str | Path | None = None, resume: bool = False, predictor: LatencyPredictor | None = None,
                 meter: LatencyMeter | None = None, ray_address: str | None = None,
                 log: Callable[[str], None] = print) -> NetAdaptResult:
    """Run (or resume) NetAdapt; see :class:`NetAdapt`."""
    runner = NetAdapt(config, out_dir, predictor=predictor, meter=meter, lut_dir=lut_dir, ray_address=ray_address,
                      log=log)
    return runner.run(spec, ckpt, data_source, resume=resume)


__all__ = ["NetAdapt", "NetAdaptResult", "NetworkState", "run_netadapt", "long_term_fine_tune", "Measurement"]
