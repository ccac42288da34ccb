"""A latency predictor fitted on whole networks measured end to end.

The look-up table adds up layers timed alone; on a CPU runtime a layer timed alone costs about
twice its share of a whole network, and not by one constant factor. This predictor instead
learns from whole networks (:mod:`latency.samples`), over analytic fused-kernel features
(:mod:`latency.features`). The candidate models:

- ``madds``: ``a * MAdds + b``, the classic proxy (a baseline);
- ``nnls``: nonnegative least squares over the per-kernel-kind features (ms per MAdd of each
  kernel kind, ms per element moved, ms per kernel launched), fitted on relative errors. Every
  coefficient is a cost, so none can be negative;
- ``gbt``: gradient-boosted trees (scikit-learn) over the same features, on log latency;
- ``nnls+gbt``: the linear model, with trees fitted on what it leaves (its log ratio).

``fit_predictor`` cross-validates each candidate (out-of-fold predictions) and keeps the one
with the most predictions within +-10% (then the lowest mean error).

The fitted predictor lives in the table's directory as ``predictor.json``: its stamp, the model,
its feature names and coefficients, its error band (the 90th percentile of the cross-validated
relative error, which ``screen`` campaigns use), the features its training set ever used, the arch_ids of its
training set (the trees are refitted from ``samples.sqlite`` on load, deterministically, so no
pickled object is ever read) and every candidate's cross-validated accuracy. It refuses a
backend or table of another stamp, and a network with a kernel kind its training set never had.
"""
from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from latency.errors import LatencyError, LUTCorruptError, StampMismatchError
from latency.features import layer_features, network_features
from latency.lut import Accuracy, LatencyLUT, accuracy
from latency.samples import SAMPLES, Sample, SampleStore
from latency.stamp import DeviceStamp
from nas.spec.arch import ArchSpec

PREDICTOR = "predictor.json"
FORMAT = "nas-latency-predictor"
FORMAT_VERSION = 1
MODELS = ("madds", "nnls", "gbt", "nnls+gbt")
MIN_SAMPLES = {"madds": 5, "nnls": 15, "gbt": 30, "nnls+gbt": 30}
FOLDS = 5


class PredictorError(LatencyError):
    """The fitted predictor cannot be built, read or used as asked."""


class TooFewSamplesError(PredictorError):
    """Fewer measured networks than the chosen model needs."""


class UnseenKernelError(PredictorError, LookupError):
    """A network uses a kernel kind no training network had, so the predictor cannot price it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


@dataclass(frozen=True)
class CandidateReport:
    """One candidate model's cross-validated accuracy (out-of-fold predictions)."""

    model: str
    accuracy: Accuracy
    fit_seconds: float

    def describe(self) -> str:
        return f"{self.model:<9} {self.accuracy.describe()}"


@dataclass(frozen=True)
class _Linear:
    """``ms = intercept + sum(coef[i] * features[i])``."""

    names: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def predict(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        return [self.intercept + sum(c * row.get(n, 0.0) for n, c in zip(self.names, self.coef)) for row in rows]


def _madds(row: Mapping[str, float]) -> float:
    return sum(value for name, value in row.items() if name.endswith(".madds") or ".madds." in name)


def _fit_madds(rows: Sequence[Mapping[str, float]], ms: Sequence[float]) -> _Linear:
    """Least squares of relative error: ``ms ~= a * MAdds + b``."""
    x = np.array([[_madds(row), 1.0] for row in rows]) / np.array(ms)[:, None]
    (a, b), *_ = np.linalg.lstsq(x, np.ones(len(ms)), rcond=None)
    return _Linear(("madds.total",), (float(a),), float(b))


def _fit_nnls(rows: Sequence[Mapping[str, float]], ms: Sequence[float], names: Sequence[str]) -> _Linear:
    """Nonnegative least squares of the relative error over ``names`` and an intercept."""
    from scipy.optimize import nnls  # heavy (scipy): only fitting needs it

    y = np.array(ms)
    x = np.array([[row.get(name, 0.0) for name in names] + [1.0] for row in rows]) / y[:, None]
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    theta, _ = nnls(x / scale, np.ones(len(ms)), maxiter=50 * x.shape[1])
    theta = theta / scale
    return _Linear(tuple(names), tuple(float(v) for v in theta[:-1]), float(theta[-1]))


def _trees(rows: Sequence[Mapping[str, float]], target: Sequence[float], names: Sequence[str], depth: int,
           rounds: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor  # heavy: only tree models need it

    model = GradientBoostingRegressor(n_estimators=rounds, learning_rate=0.05, max_depth=depth, subsample=0.8,
                                      random_state=0)
    model.fit([[row.get(name, 0.0) for name in names] for row in rows], list(target))
    return model


class _Model:
    """A fitted model of one kind: the linear part (if any) and the trees (if any)."""

    def __init__(self, kind: str, names: Sequence[str], linear: _Linear | None, trees: Any = None) -> None:
        self.kind, self.names, self.linear, self.trees = kind, tuple(names), linear, trees

    @classmethod
    def fit(cls, kind: str, rows: Sequence[Mapping[str, float]], ms: Sequence[float],
            names: Sequence[str]) -> "_Model":
        if kind == "madds":
            return cls(kind, names, _fit_madds(rows, ms))
        if kind == "gbt":
            return cls(kind, names, None, _trees(rows, [math.log(v) for v in ms], names, 3, 300))
        linear = _fit_nnls(rows, ms, names)
        if kind == "nnls":
            return cls(kind, names, linear)
        base = linear.predict(rows)
        residual = [math.log(m / max(b, 1e-9)) for m, b in zip(ms, base)]
        return cls(kind, names, linear, _trees(rows, residual, names, 2, 150))

    def predict(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        if self.kind == "madds":
            assert self.linear is not None
            return self.linear.predict([{"madds.total": _madds(row)} for row in rows])
        table = [[row.get(name, 0.0) for name in self.names] for row in rows]
        if self.kind == "gbt":
            return [math.exp(v) for v in self.trees.predict(table)]
        assert self.linear is not None
        base = self.linear.predict(rows)
        if self.trees is None:
            return base
        return [b * math.exp(v) for b, v in zip(base, self.trees.predict(table))]


def _feature_names(rows: Sequence[Mapping[str, float]]) -> list[str]:
    return sorted({name for row in rows for name, value in row.items() if value})


def _check_size(kind: str, count: int) -> None:
    if kind not in MODELS:
        raise PredictorError(f"model: must be one of {list(MODELS)} or auto (got {kind!r})")
    if count < MIN_SAMPLES[kind]:
        raise TooFewSamplesError(f"model {kind!r} needs at least {MIN_SAMPLES[kind]} measured networks, the "
                                 f"training set has {count}; measure more (nas latency fit --samples N)")


def out_of_fold(kind: str, rows: Sequence[Mapping[str, float]], ms: Sequence[float],
                folds: int = FOLDS, seed: int = 0) -> list[float]:
    """Cross-validated predictions: each network predicted by a model fitted without it."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    predictions = [0.0] * len(rows)
    for fold in range(folds):
        held = set(order[fold::folds])
        train = [i for i in range(len(rows)) if i not in held]
        names = _feature_names([rows[i] for i in train])
        model = _Model.fit(kind, [rows[i] for i in train], [ms[i] for i in train], names)
        held_list = sorted(held)
        for index, value in zip(held_list, model.predict([rows[i] for i in held_list])):
            predictions[index] = value
    return predictions


class FittedPredictor:
    """A fitted model over whole-network features at one stamp (see the module docstring)."""

    def __init__(self, model: _Model, stamp: DeviceStamp, training: Sequence[str],
                 candidates: Sequence[CandidateReport], seen: Sequence[str], band: float,
                 directory: Path | None = None) -> None:
        self.model = model
        self.band = band  # the 90th percentile of the cross-validated |relative error|
        self.stamp = stamp
        self.training = tuple(training)
        self.candidates = tuple(candidates)
        self.seen = frozenset(seen)
        self.directory = directory

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def resolution(self) -> int:
        return self.stamp.resolution

    def require(self, stamp: DeviceStamp) -> None:
        """Refuse to stand in for measurements taken under another stamp."""
        if stamp.key != self.stamp.key:
            raise StampMismatchError(f"the latency predictor{self._where()} was fitted under [{self.stamp.key}], "
                                     f"not [{stamp.key}]; fit one for these settings (nas latency fit)")

    def _where(self) -> str:
        return f" in {self.directory}" if self.directory is not None else ""

    def features(self, spec: ArchSpec) -> dict[str, float]:
        """The network features of ``spec`` at the predictor's resolution, refusing unseen kernels."""
        total: dict[str, float] = {}
        for piece in layer_features(spec, self.resolution):
            for name, value in piece.values:
                if value and name not in self.seen:
                    raise UnseenKernelError(
                        f"latency predictor{self._where()}: {spec.name or spec.arch_id} {piece.name} has "
                        f"{name!r}, which no training network had; add networks with it to the training set "
                        f"(nas latency fit --specs DIR)")
                total[name] = total.get(name, 0.0) + value
        return total

    def predict(self, spec: ArchSpec) -> float:
        """Predicted latency of ``spec`` in milliseconds."""
        return self.model.predict([self.features(spec)])[0]

    def predict_many(self, specs: Sequence[ArchSpec]) -> list[float]:
        return self.model.predict([self.features(spec) for spec in specs])

    def close(self) -> None:
        """Nothing to release (the same call as a look-up table's)."""

    # ----- files ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        linear = self.model.linear
        return {"format": FORMAT, "version": FORMAT_VERSION, "stamp": self.stamp.to_dict(), "model": self.kind,
                "features": list(self.model.names), "seen": sorted(self.seen),
                "linear": None if linear is None else {"names": list(linear.names), "coef": list(linear.coef),
                                                       "intercept": linear.intercept},
                "training": list(self.training), "band": self.band, "fitted_at": time.time(),
                "candidates": [{"model": c.model, "fit_seconds": c.fit_seconds, **c.accuracy.to_dict()}
                               for c in self.candidates]}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / PREDICTOR
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(temporary, path)
        self.directory = Path(directory)
        return path


def has_predictor(directory: str | Path) -> bool:
    return (Path(directory) / PREDICTOR).exists()


_LOADED: dict[tuple[Any, ...], FittedPredictor] = {}  # per process: a campaign worker predicts every trial
_LOADED_MAX = 8


def _file_key(path: Path) -> tuple[Any, ...]:
    try:
        status = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path.resolve()), status.st_mtime_ns, status.st_size)


def load_predictor(directory: str | Path) -> FittedPredictor:
    """The fitted predictor stored in ``directory`` (trees are refitted from its samples).

    Loaded once per process while neither ``predictor.json`` nor the sample store changes (a
    refit or a new measurement loads it afresh), so a worker that predicts every trial does not
    refit the trees every time."""
    path = Path(directory) / PREDICTOR
    key = (*_file_key(path), *_file_key(Path(directory) / SAMPLES))
    if key in _LOADED:
        return _LOADED[key]
    predictor = _load_predictor(directory, path)
    if len(_LOADED) >= _LOADED_MAX:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = predictor
    return predictor


def _load_predictor(directory: str | Path, path: Path) -> FittedPredictor:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PredictorError(f"{directory} has no fitted predictor ({PREDICTOR}); run "
                             f"'nas latency fit --lut {directory}'") from None
    except (OSError, ValueError) as error:
        raise LUTCorruptError(f"latency predictor {path} is unreadable ({error}); refit it with "
                              f"'nas latency fit --lut {directory}'") from None
    try:
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}, expected "
                             f"{FORMAT!r} version {FORMAT_VERSION}")
        stamp = DeviceStamp.from_dict(data["stamp"])
        kind = str(data["model"])
        if kind not in MODELS:
            raise ValueError(f"model {kind!r}")
        names = [str(name) for name in data["features"]]
        linear = None
        if data["linear"] is not None:
            part = data["linear"]
            linear = _Linear(tuple(str(n) for n in part["names"]), tuple(float(v) for v in part["coef"]),
                             float(part["intercept"]))
            if len(linear.names) != len(linear.coef):
                raise ValueError("linear: as many names as coefficients expected")
        training = [str(arch_id) for arch_id in data["training"]]
        seen = [str(name) for name in data["seen"]]
        band = float(data["band"])
        if not 0 <= band < 1:
            raise ValueError(f"band {band!r} outside [0, 1)")
        candidates = [CandidateReport(str(c["model"]), Accuracy(**{k: v for k, v in c.items()
                                                                   if k not in ("model", "fit_seconds")}),
                                      float(c["fit_seconds"])) for c in data.get("candidates", [])]
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise LUTCorruptError(f"latency predictor {path} is corrupt ({error}); refit it with "
                              f"'nas latency fit --lut {directory}'") from None
    trees = None
    if kind in ("gbt", "nnls+gbt"):
        store = SampleStore(directory, stamp)
        try:
            by_id = {sample.arch_id: sample for sample in store.samples()}
        finally:
            store.close()
        missing = [arch_id for arch_id in training if arch_id not in by_id]
        if missing:
            raise LUTCorruptError(f"latency predictor {path}: its training network {missing[0]} is not in "
                                  f"{store.path}; refit it")
        samples = [by_id[arch_id] for arch_id in training]
        rows = [network_features(sample.spec, stamp.resolution) for sample in samples]
        refit = _Model.fit(kind, rows, [sample.ms for sample in samples], names)
        trees = refit.trees
    return FittedPredictor(_Model(kind, names, linear, trees), stamp, training, candidates, seen, band,
                           Path(directory))


def fit_predictor(samples: Sequence[Sample], stamp: DeviceStamp, model: str = "auto",
                  folds: int = FOLDS) -> tuple[FittedPredictor, list[CandidateReport], dict[str, list[float]]]:
    """Cross-validate the candidates on ``samples``, fit the best (or ``model``) on all of them.

    Returns the predictor, every candidate's report and its out-of-fold predictions (in the
    order of ``samples``).
    """
    kinds = list(MODELS) if model == "auto" else [model]
    if model != "auto":
        _check_size(model, len(samples))
    usable = [kind for kind in kinds if len(samples) >= MIN_SAMPLES[kind]]
    if not usable:
        _check_size(min(kinds, key=MIN_SAMPLES.__getitem__), len(samples))
    rows = [network_features(sample.spec, stamp.resolution) for sample in samples]
    ms = [sample.ms for sample in samples]
    reports, predictions = [], {}
    for kind in usable:
        started = time.perf_counter()
        predicted = out_of_fold(kind, rows, ms, folds=min(folds, len(samples)))
        reports.append(CandidateReport(kind, accuracy(predicted, ms), (time.perf_counter() - started) / folds))
        predictions[kind] = predicted
    best = max(reports, key=lambda report: (report.accuracy.within_10pct, -report.accuracy.mean_abs_pct_error))
    names = _feature_names(rows)
    fitted = _Model.fit(best.model, rows, ms, names)
    errors = sorted(abs(p - m) / m for p, m in zip(predictions[best.model], ms))
    band = min(0.99, errors[min(len(errors) - 1, int(0.9 * len(errors)))])
    predictor = FittedPredictor(fitted, stamp, [sample.arch_id for sample in samples], reports, names, band)
    return predictor, reports, predictions


def adaptive_picks(samples: Sequence[Sample], errors: Sequence[float], pool: Sequence[ArchSpec], count: int,
                   resolution: int) -> list[ArchSpec]:
    """The ``count`` networks of ``pool`` nearest to where the held-out error is largest: each pool
    network is scored by the out-of-fold error of its nearest training network (standardised
    log features), and the highest scores win (the closest of equal ones), at most one pick per
    training neighbour first."""
    if count <= 0 or not pool:
        return []
    rows = [network_features(sample.spec, resolution) for sample in samples]
    names = _feature_names(rows)

    def vector(row: Mapping[str, float]) -> list[float]:
        return [math.log1p(row.get(name, 0.0)) for name in names]

    train = [vector(row) for row in rows]
    spread = [statistics.pstdev(column) or 1.0 for column in zip(*train)]
    known = {sample.arch_id for sample in samples}
    scored = []
    for spec in pool:
        if spec.arch_id in known:
            continue
        point = vector(network_features(spec, resolution))
        distances = [sum(((a - b) / s) ** 2 for a, b, s in zip(point, other, spread)) for other in train]
        nearest = min(range(len(train)), key=distances.__getitem__)
        scored.append((-abs(errors[nearest]), distances[nearest], nearest, spec))
    scored.sort(key=lambda item: item[:2])  # the largest error first; of equal ones, the closest
    picks, used = [], set()
    for _, _, nearest, spec in scored:
        if nearest not in used and len(picks) < count:
            picks.append(spec)
            used.add(nearest)
    for *_, spec in scored:
        if len(picks) >= count:
            break
        if spec not in picks:
            picks.append(spec)
    return picks


def open_predictor(directory: str | Path) -> FittedPredictor | LatencyLUT:
    """What predicts latency from ``directory``: its fitted predictor where ``nas latency fit``
    made one, else its look-up table (summed pieces, calibrated). Both have ``predict(spec)``,
    ``stamp`` and ``close()``."""
    return load_predictor(directory) if has_predictor(directory) else LatencyLUT(directory)


def predictor_kind(predictor: FittedPredictor | LatencyLUT) -> str:
    """``table`` for a look-up table, else the fitted model's name."""
    return predictor.kind if isinstance(predictor, FittedPredictor) else "table"
