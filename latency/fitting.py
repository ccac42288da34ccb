"""``nas latency fit``: measure whole networks, fit the predictor, and add samples where it errs.

1. Measure every network of the initial set that the directory's ``samples.sqlite`` lacks (the
   space's samples, the references, NetAdapt-pruned variants; the caller composes them).
2. Fit every candidate model and keep the best by cross-validated accuracy
   (:func:`latency.predictor.fit_predictor`).
3. Adaptive rounds (at most ``rounds``): draw a pool of fresh space samples, measure the
   ``per_round`` of them nearest to the training networks with the largest held-out errors, refit.
   The directory counts the adaptive networks it holds, so a re-run adds only what is missing.
4. Save ``predictor.json`` beside the samples.

Every measurement is stored as it finishes, so an interrupted fit resumes where it stopped, and
a re-run with the same settings measures nothing new.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from latency.predictor import CandidateReport, FittedPredictor, adaptive_picks, fit_predictor
from latency.samples import SampleStore, measure_missing
from latency.sampling import space_specs
from latency.stamp import DeviceStamp
from nas.spec.arch import ArchSpec
from nas.spec.checks import check_int

POOL_FACTOR = 20  # pool networks drawn per adaptive pick


@dataclass(frozen=True)
class FitRound:
    """One fit: how many networks it was fitted on, how many were measured first, and the candidates."""

    round: int
    samples: int
    measured: int
    candidates: tuple[CandidateReport, ...]
    chosen: str


@dataclass(frozen=True)
class FitReport:
    predictor: FittedPredictor
    rounds: tuple[FitRound, ...]
    path: Path


def fit_in_rounds(directory: str | Path, backend: Any, stamp: DeviceStamp,
                  initial: Sequence[tuple[str, Sequence[ArchSpec]]], *, space: str | None = None,
                  space_options: Mapping[str, Any] | None = None, rounds: int = 2, per_round: int = 10,
                  model: str = "auto", seed: int = 0,
                  progress: Callable[[str], Callable[[int, int, Any], None]] | None = None,
                  log: Callable[[str], None] = print) -> FitReport:
    """Run steps 1-4 of the module docstring in ``directory`` with ``backend`` (of ``stamp``)."""
    check_int("rounds", rounds, 0, 20)
    check_int("per_round", per_round, 1)
    store = SampleStore(directory, stamp)
    history: list[FitRound] = []
    try:
        measured = 0
        for role, specs in initial:
            measured += measure_missing(store, backend, specs, role,
                                        progress(f"measuring {role} networks") if progress else None)
        # Adaptive picks still to make: a re-run after a finished fit makes none, and one interrupted
        # mid-round makes only the rest.
        left = max(0, rounds * per_round - sum(sample.role == "adaptive" for sample in store.samples()))
        for index in range(rounds + 1):  # bounded: at most ``rounds`` adaptive rounds
            samples = store.samples()
            predictor, reports, predictions = fit_predictor(samples, stamp, model)
            history.append(FitRound(index, len(samples), measured, tuple(reports), predictor.kind))
            for report in reports:
                log(f"round {index} ({len(samples)} networks) {report.describe()}")
            if left == 0 or space is None:
                break
            chosen = predictions[predictor.kind]
            errors = [(p - s.ms) / s.ms for p, s in zip(chosen, samples)]
            pool, _ = space_specs(space, per_round * POOL_FACTOR, seed=seed + 7919 * (index + 1),
                                  options=space_options)
            picks = adaptive_picks(samples, errors, pool, min(per_round, left), stamp.resolution)
            measured = measure_missing(store, backend, picks, "adaptive",
                                       progress(f"round {index + 1}: measuring where the error is largest")
                                       if progress else None)
            left -= max(1, measured)
        path = predictor.save(directory)
    finally:
        store.close()
    return FitReport(predictor, tuple(history), path)
