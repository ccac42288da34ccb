"""Latency look-up tables: per-piece latencies measured once, summed to predict a network.

A table is a directory:

- ``entries.sqlite``: one row per measured piece (stem, layer, head, launch overhead), keyed by
  its canonical signature (:mod:`latency.pieces`). Each row is committed as soon as it is
  measured, so an interrupted build keeps everything it measured and a re-run skips it.
- ``meta.json``: the device stamp, where the pieces came from, and the calibration.

Prediction: the sum of the pieces, less the graph-launch overhead that each separately timed
piece paid once but a whole network pays only once (``sum - (n - 1) * overhead``, the overhead
capped by the fastest measured piece), then the
linear calibration ``a * sum + b`` fitted against end-to-end measurements (the additivity check).

Channel interpolation: a piece that was not measured is estimated from measured pieces with
the same structure (same ``base``) that differ only in channel counts, so a NetAdapt-pruned
width needs no new measurement:

1. linear interpolation between the two nearest measured pieces on a straight line through it
   in (in, mid, out) channel space, one on either side;
2. otherwise, from a measured anchor, the first-order sum of separate moves along measured
   lines (for example a shrunk expansion *and* a shrunk group width):
   ``v(anchor) + sum(v(anchor + move) - v(anchor))``.

A piece whose channels lie outside the measured range of its structure, or that has no measured
neighbours, raises :class:`LUTMissError` naming it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from latency.errors import CalibrationError, LUTCorruptError, LUTMissError, StampMismatchError
from latency.pieces import Piece, overhead_piece, spec_pieces, unique_pieces
from latency.result import LatencyResult
from latency.stamp import DeviceStamp
from nas.spec.arch import ArchSpec

FORMAT = "nas-latency-lut"
FORMAT_VERSION = 1
META = "meta.json"
ENTRIES = "entries.sqlite"
_COLUMNS = ("key", "kind", "base", "c_in", "c_mid", "c_out", "se", "median_ms", "p10_ms", "p90_ms", "iqr_ms",
            "repeats", "cv", "measured_at")


@dataclass(frozen=True)
class Calibration:
    """``measured ~= a * summed + b`` (milliseconds), fitted on ``n`` end-to-end measurements."""

    a: float
    b: float
    n: int

    def apply(self, summed_ms: float) -> float:
        return self.a * summed_ms + self.b

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Accuracy:
    """How well predictions match measurements: shares within +-5/10/20%, rank correlations, and
    the mean and largest relative error."""

    n: int
    within_10pct: float
    spearman: float
    mean_abs_pct_error: float
    max_abs_pct_error: float
    within_5pct: float = float("nan")
    within_20pct: float = float("nan")
    kendall: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        return (f"{self.within_5pct:.0%} / {self.within_10pct:.0%} / {self.within_20pct:.0%} within +-5/10/20%, "
                f"Spearman {self.spearman:.3f}, Kendall {self.kendall:.3f}, mean |error| "
                f"{self.mean_abs_pct_error:.1%}, max {self.max_abs_pct_error:.1%} (n={self.n})")


@dataclass(frozen=True)
class _Entry:
    coords: tuple[int, int, int]
    se: int
    ms: float


@dataclass(frozen=True)
class BuildReport:
    """What a build did: pieces asked for, already present, measured now, and the time taken."""

    requested: int
    present: int
    measured: int
    seconds: float

    def describe(self) -> str:
        return (f"{self.requested} pieces: {self.present} already in the table, {self.measured} measured "
                f"in {self.seconds:.1f} s")


def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> Accuracy:
    """Shares within +-5/10/20%, Spearman's rho, Kendall's tau and the relative errors of ``predicted``."""
    from scipy.stats import kendalltau, spearmanr  # heavy (about a second to import): only reports need it

    if len(predicted) != len(measured) or not predicted:
        raise ValueError("accuracy needs equally many (and at least one) predictions and measurements")
    errors = [abs(p - m) / m for p, m in zip(predicted, measured)]
    rho = float(spearmanr(predicted, measured)[0]) if len(predicted) > 1 else float("nan")
    tau = float(kendalltau(predicted, measured)[0]) if len(predicted) > 1 else float("nan")

    def within(bound: float) -> float:
        return sum(error <= bound for error in errors) / len(errors)

    return Accuracy(n=len(errors), within_10pct=within(0.10), spearman=rho,
                    mean_abs_pct_error=statistics.fmean(errors), max_abs_pct_error=max(errors),
                    within_5pct=within(0.05), within_20pct=within(0.20), kendall=tau)


MIN_CALIBRATION = 3  # networks a calibration line is fitted on, at the least


def fit_calibration(summed: Sequence[float], measured: Sequence[float]) -> Calibration:
    """Least-squares line ``measured ~= a * summed + b``, refused (:class:`CalibrationError`)
    on fewer than :data:`MIN_CALIBRATION` networks or with a slope that is not positive: a table
    whose sums do not rise with the measured latency cannot be rescued by a line (with 3 networks
    a fit of -0.133 * sum + 790.8 ms was once reported as 100% within 10%, on its own points)."""
    if len(summed) != len(measured):
        raise CalibrationError(f"calibration: {len(summed)} predictions for {len(measured)} measurements")
    if len(summed) < MIN_CALIBRATION:
        raise CalibrationError(f"calibration needs at least {MIN_CALIBRATION} networks measured end to end "
                               f"(got {len(summed)}); measure more (--calibrate N)")
    mean_x, mean_y = statistics.fmean(summed), statistics.fmean(measured)
    var_x = sum((x - mean_x) ** 2 for x in summed)
    if var_x <= 0:
        raise CalibrationError("calibration needs networks of different predicted latency")
    a = sum((x - mean_x) * (y - mean_y) for x, y in zip(summed, measured)) / var_x
    if a <= 0:
        raise CalibrationError(f"calibration refused: the fitted slope is {a:.3g} (measured latency should rise "
                               f"with the table's sums); the {len(summed)} networks are too few or too alike to "
                               "calibrate on, so the table is left uncalibrated")
    return Calibration(a=a, b=mean_y - a * mean_x, n=len(summed))


class LatencyLUT:
    """A stamped look-up table in ``directory`` (see the module docstring).

    ``LatencyLUT(dir)`` opens an existing table; ``LatencyLUT(dir, stamp)`` opens it or creates
    it, and refuses a table of another stamp. Prediction uses the stamp's resolution.
    """

    def __init__(self, directory: str | Path, stamp: DeviceStamp | None = None,
                 source: Mapping[str, Any] | None = None) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / META
        if meta_path.exists():
            self._meta = self._read_meta()
            if stamp is None and not (self.directory / ENTRIES).is_file():  # opened to read: never created here
                raise LUTCorruptError(f"look-up table {self.directory} has {META} but no {ENTRIES}; left untouched")
            if stamp is not None and stamp != self.stamp:
                raise StampMismatchError(f"look-up table {self.directory} was measured under stamp "
                                         f"[{self.stamp.key}], not [{stamp.key}]; use another directory")
        else:
            if stamp is None:
                raise LUTCorruptError(f"{self.directory} is not a latency look-up table (no {META})")
            if self.directory.exists() and (self.directory / ENTRIES).exists():
                raise LUTCorruptError(f"{self.directory} has {ENTRIES} but no {META}; refusing to overwrite it")
            self.directory.mkdir(parents=True, exist_ok=True)
            self._meta = {"format": FORMAT, "version": FORMAT_VERSION, "stamp": stamp.to_dict(),
                          "created_at": time.time(), "sources": [], "calibration": None}
            self._write_meta()
        if source:
            sources = self._meta.setdefault("sources", [])
            if dict(source) not in sources:
                sources.append(dict(source))
                self._write_meta()
        self._connection = self._open_entries()
        self._exact: dict[str, _Entry] = {}
        self._groups: dict[str, list[_Entry]] = {}
        self._memo: dict[str, tuple[float, str]] = {}
        self._fastest: float | None = None
        self._load_entries()

    # ----- files --------------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, Any]:
        path = self.directory / META
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise LUTCorruptError(f"look-up table metadata {path} is unreadable: {error}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise LUTCorruptError(f"{path} is not latency look-up table metadata (format {FORMAT!r} expected)")
        if meta.get("version") != FORMAT_VERSION:
            raise LUTCorruptError(f"{path}: unsupported format version {meta.get('version')!r}")
        try:
            meta["_stamp"] = DeviceStamp.from_dict(meta["stamp"])
            calibration = meta.get("calibration")
            if calibration is not None:
                meta["_calibration"] = Calibration(a=float(calibration["a"]), b=float(calibration["b"]),
                                                   n=int(calibration["n"]))
        except (KeyError, TypeError, ValueError) as error:
            raise LUTCorruptError(f"{path}: bad stamp or calibration: {error}") from None
        return meta

    def _write_meta(self) -> None:
        path = self.directory / META
        data = {key: value for key, value in self._meta.items() if not key.startswith("_")}
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(temporary, path)
        self._meta["_stamp"] = DeviceStamp.from_dict(data["stamp"])

    def _open_entries(self) -> sqlite3.Connection:
        path = self.directory / ENTRIES
        try:
            connection = sqlite3.connect(str(path), timeout=60.0)
            with connection:
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT NOT NULL, base TEXT NOT NULL, "
                    "c_in INTEGER NOT NULL, c_mid INTEGER NOT NULL, c_out INTEGER NOT NULL, se INTEGER NOT NULL, "
                    "median_ms REAL NOT NULL, p10_ms REAL NOT NULL, p90_ms REAL NOT NULL, iqr_ms REAL NOT NULL, "
                    "repeats INTEGER NOT NULL, cv REAL NOT NULL, measured_at REAL NOT NULL)")
            columns = tuple(row[1] for row in connection.execute("PRAGMA table_info(entries)"))
        except sqlite3.DatabaseError as error:
            raise LUTCorruptError(f"look-up table entries {path} are unreadable ({error}); left untouched") from None
        if columns != _COLUMNS:
            raise LUTCorruptError(f"look-up table entries {path} have an unknown layout {list(columns)}")
        return connection

    def _load_entries(self) -> None:
        try:
            rows = self._connection.execute(
                "SELECT key, base, c_in, c_mid, c_out, se, median_ms FROM entries").fetchall()
        except sqlite3.DatabaseError as error:
            raise LUTCorruptError(f"look-up table {self.directory / ENTRIES} is unreadable ({error})") from None
        for key, base, c_in, c_mid, c_out, se, ms in rows:
            self._remember(key, base, (c_in, c_mid, c_out), se, ms)

    def _remember(self, key: str, base: str, coords: tuple[int, int, int], se: int, ms: float) -> None:
        if not (isinstance(ms, float) and math.isfinite(ms) and ms >= 0):
            raise LUTCorruptError(f"look-up table {self.directory}: bad latency {ms!r} for {key}")
        entry = _Entry(coords=tuple(int(c) for c in coords), se=int(se), ms=ms)
        if key in self._exact:
            group = self._groups[base]
            group[group.index(self._exact[key])] = entry
        else:
            self._groups.setdefault(base, []).append(entry)
        self._exact[key] = entry
        self._memo.clear()
        self._fastest = None

    def close(self) -> None:
        self._connection.close()

    # ----- properties ---------------------------------------------------------------------------

    @property
    def stamp(self) -> DeviceStamp:
        return self._meta["_stamp"]

    @property
    def resolution(self) -> int:
        return self.stamp.resolution

    @property
    def calibration(self) -> Calibration | None:
        return self._meta.get("_calibration")

    @property
    def sources(self) -> list[dict[str, Any]]:
        return list(self._meta.get("sources", []))

    def __len__(self) -> int:
        return len(self._exact)

    def __contains__(self, key: object) -> bool:
        return key in self._exact

    def keys(self) -> list[str]:
        return list(self._exact)

    def missing(self, pieces: Iterable[Piece]) -> list[Piece]:
        """The pieces (deduplicated, in order) that have no measured entry."""
        seen: dict[str, Piece] = {}
        for piece in pieces:
            if piece.key not in self._exact:
                seen.setdefault(piece.key, piece)
        return list(seen.values())

    # ----- writing ------------------------------------------------------------------------------

    def add(self, piece: Piece, result: LatencyResult) -> None:
        """Store one measured piece (committed at once). Its stamp must be the table's."""
        if result.stamp != self.stamp:
            raise StampMismatchError(f"refusing to add a measurement under stamp [{result.stamp.key}] to the table "
                                     f"{self.directory} of stamp [{self.stamp.key}]")
        try:
            with self._connection:
                self._connection.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (piece.key, piece.kind, piece.base, *piece.coords, piece.se, result.estimate_ms, result.p10_ms,
                     result.p90_ms, result.iqr_ms, result.repeats, result.cv, time.time()))
        except sqlite3.DatabaseError as error:
            raise LUTCorruptError(f"look-up table {self.directory / ENTRIES} is unwritable ({error})") from None
        self._remember(piece.key, piece.base, piece.coords, piece.se, float(result.estimate_ms))

    def set_calibration(self, calibration: Calibration | None, report: Mapping[str, Any] | None = None) -> None:
        """Save (or clear) the calibration and its additivity report in ``meta.json``."""
        self._meta["calibration"] = None if calibration is None else calibration.to_dict()
        self._meta["_calibration"] = calibration
        self._meta["additivity"] = dict(report) if report is not None else None
        self._write_meta()

    # ----- reading ------------------------------------------------------------------------------

    def piece_ms(self, piece: Piece) -> tuple[float, str]:
        """The latency of ``piece`` and how it was found: ``measured`` or ``interpolated``."""
        entry = self._exact.get(piece.key)
        if entry is not None:
            return entry.ms, "measured"
        memo = self._memo.get(piece.key)
        if memo is not None:
            return memo
        group = self._groups.get(piece.base)
        if not group:
            raise LUTMissError(f"look-up table miss: {piece.describe()}: nothing of this structure was measured "
                               f"(run 'nas latency build-lut' with a source that contains it)")
        for axis, name in enumerate(("in", "mid", "out")):
            low = min(entry.coords[axis] for entry in group)
            high = max(entry.coords[axis] for entry in group)
            if not low <= piece.coords[axis] <= high:
                raise LUTMissError(f"look-up table miss: {piece.describe()}: {name} channels {piece.coords[axis]} "
                                   f"outside the measured range [{low}, {high}] for this structure")
        value = _on_line(group, piece.coords, piece.se, strict_se=True)
        if value is None:
            value = _decomposed(group, piece.coords, piece.se)
        if value is None:
            raise LUTMissError(f"look-up table miss: {piece.describe()}: no measured neighbours to interpolate from "
                               f"({len(group)} measured of this structure)")
        self._memo[piece.key] = (value, "interpolated")
        return value, "interpolated"

    @property
    def overhead_ms(self) -> float:
        """The launch overhead of one compiled graph: its measurement, capped by the fastest piece
        (every piece pays it, so a noisy overhead figure can never push a prediction below zero)."""
        key = overhead_piece().key
        entry = self._exact.get(key)
        if entry is None:
            raise LUTMissError(f"look-up table {self.directory} has no launch-overhead entry; rebuild it")
        if self._fastest is None:
            others = [other.ms for name, other in self._exact.items() if name != key]
            self._fastest = min(others) if others else entry.ms
        return min(entry.ms, self._fastest)

    def breakdown(self, spec: ArchSpec) -> list[tuple[Piece, float, str]]:
        """``(piece, ms, how)`` for every piece of ``spec`` at the table's resolution."""
        return [(piece, *self.piece_ms(piece)) for piece in spec_pieces(spec, self.resolution, with_config=False)]

    def predict_summed(self, spec: ArchSpec) -> float:
        """The uncalibrated prediction: pieces summed, less the launch overheads counted twice."""
        pieces = spec_pieces(spec, self.resolution, with_config=False)
        total = sum(self.piece_ms(piece)[0] for piece in pieces)
        return total - (len(pieces) - 1) * self.overhead_ms

    def predict(self, spec: ArchSpec, calibrated: bool = True) -> float:
        """Predicted latency of ``spec`` in ms (calibrated when the table has a calibration)."""
        summed = self.predict_summed(spec)
        calibration = self.calibration
        return calibration.apply(summed) if calibrated and calibration is not None else summed


# ----- interpolation -------------------------------------------------------------------------------


def _direction(delta: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    step = 0
    for value in delta:
        step = math.gcd(step, abs(value))
    return tuple(value // step for value in delta), step


def _on_line(group: list[_Entry], coords: tuple[int, int, int], se: int, strict_se: bool) -> float | None:
    """Linear interpolation between the nearest measured entries on either side of ``coords``
    along one straight line; an exact channel match returns its value (closest SE width)."""
    exact = [entry for entry in group if entry.coords == coords]
    if exact:
        if strict_se:
            exact = [entry for entry in exact if entry.se == se]
            if exact:
                return exact[0].ms
        else:
            return min(exact, key=lambda entry: abs(entry.se - se)).ms
    nearest: dict[tuple[int, ...], list[tuple[int, _Entry]]] = {}
    for entry in group:
        delta = tuple(a - b for a, b in zip(entry.coords, coords))
        if not any(delta):
            continue
        direction, distance = _direction(delta)
        nearest.setdefault(direction, []).append((distance, entry))
    best: tuple[float, float] | None = None
    for direction, ahead in nearest.items():
        opposite = tuple(-value for value in direction)
        if opposite not in nearest or direction > opposite:
            continue
        behind = sorted(nearest[opposite], key=lambda item: item[0])[:4]
        pairs = [(d1, e1, d2, e2) for d1, e1 in sorted(ahead, key=lambda item: item[0])[:4] for d2, e2 in behind
                 if not strict_se or min(e1.se, e2.se) <= se <= max(e1.se, e2.se)]
        if not pairs:
            continue
        d1, e1, d2, e2 = min(pairs, key=lambda pair: pair[0] + pair[2])
        span = (d1 + d2) * math.sqrt(sum(value * value for value in direction))
        value = (e1.ms * d2 + e2.ms * d1) / (d1 + d2)
        if best is None or span < best[0]:
            best = (span, value)
    return None if best is None else best[1]


_SPLITS = (
    ((0, 1, 0), (1, 0, 1)),             # expansion, then the (in, out) of a residual group
    ((0, 1, 0), (1, 0, 0), (0, 0, 1)),  # expansion, input and output separately
    ((1, 1, 0), (0, 0, 1)),             # dwsep (mid follows in), then output
    ((0, 1, 1), (1, 0, 0)),             # regular conv / stem (mid is out), then input
    ((1, 0, 0), (0, 1, 1)),
)


def _decomposed(group: list[_Entry], coords: tuple[int, int, int], se: int) -> float | None:
    """First-order estimate from a measured anchor plus separate moves along measured lines."""
    # Nearest anchors first, but all of them: on a one-line-at-a-time grid (NetAdapt's) the only
    # anchor whose lines reach a point off two lines is the grid's centre, often not the nearest.
    anchors = sorted(group, key=lambda entry: sum(abs(a - b) for a, b in zip(entry.coords, coords)))
    for anchor in anchors:
        delta = tuple(a - b for a, b in zip(coords, anchor.coords))
        for split in _SPLITS:
            moves = [tuple(d * m for d, m in zip(delta, mask)) for mask in split]
            moves = [move for move in moves if any(move)]
            if len(moves) < 2:
                continue  # a single move is a line, which _on_line already tried
            if [sum(move[axis] for move in moves) for axis in range(3)] != list(delta):
                continue
            total = anchor.ms
            for move in moves:
                point = tuple(a + m for a, m in zip(anchor.coords, move))
                value = _on_line(group, point, se, strict_se=False)
                if value is None:
                    break
                total += value - anchor.ms
            else:
                return max(total, 0.0)
    return None


# ----- building and calibrating ----------------------------------------------------------------------


def build_lut(lut: LatencyLUT, backend, pieces: Iterable[Piece], *, chunk: int = 40,
              progress: Callable[[int, int, Piece], None] | None = None) -> BuildReport:
    """Measure every piece not yet in ``lut`` (plus the launch overhead) with ``backend``.

    Pieces are measured ``chunk`` at a time per worker and stored one by one as they finish, so
    an interrupted build keeps what it measured and a re-run measures only the rest.
    """
    if chunk < 1:
        raise ValueError(f"chunk: must be >= 1 (got {chunk!r})")
    stamp = backend.stamp(resolution=lut.resolution)
    if stamp != lut.stamp:
        raise StampMismatchError(f"backend stamp [{stamp.key}] differs from the table's [{lut.stamp.key}]")
    requested = [overhead_piece(), *pieces]
    wanted = {piece.key for piece in requested}
    todo = lut.missing(requested)
    started = time.perf_counter()
    done = 0
    for start in range(0, len(todo), chunk):
        for piece, result in backend.measure_pieces(todo[start:start + chunk], lut.resolution):
            lut.add(piece, result)
            done += 1
            if progress is not None:
                progress(done, len(todo), piece)
    return BuildReport(requested=len(wanted), present=len(wanted) - len(todo), measured=done,
                       seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class AdditivityRow:
    """One spec of an additivity check: measured end to end, summed from pieces, calibrated."""

    name: str
    arch_id: str
    measured_ms: float
    summed_ms: float
    calibrated_ms: float | None


@dataclass(frozen=True)
class AdditivityReport:
    """Summed pieces against end-to-end measurements, before and after the calibration.

    ``fitted`` says whether the calibration was fitted on these very specs: then ``after`` is an
    in-sample figure, not a held-out one.
    """

    n: int
    before: Accuracy
    after: Accuracy | None
    calibration: Calibration | None
    fitted: bool
    rows: tuple[AdditivityRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "before": self.before.to_dict(),
                "after": self.after.to_dict() if self.after is not None else None,
                "calibration": self.calibration.to_dict() if self.calibration is not None else None,
                "fitted": self.fitted, "rows": [dataclasses.asdict(row) for row in self.rows]}


def additivity_check(lut: LatencyLUT, specs: Sequence[ArchSpec], measured_ms: Sequence[float],
                     fit: bool = True) -> AdditivityReport:
    """Compare summed pieces with end-to-end measurements; fit (and save) a linear calibration.

    With ``fit=False`` the table's existing calibration is evaluated instead (``after`` is None
    without one).
    """
    if len(specs) != len(measured_ms) or not specs:
        raise ValueError("additivity check needs one measurement per spec (and at least one spec)")
    summed = [lut.predict_summed(spec) for spec in specs]
    before = accuracy(summed, measured_ms)
    calibration = fit_calibration(summed, measured_ms) if fit else lut.calibration
    after = None
    calibrated: list[float | None] = [None] * len(specs)
    if calibration is not None:
        calibrated = [calibration.apply(value) for value in summed]
        after = accuracy([value for value in calibrated if value is not None], measured_ms)
    rows = tuple(AdditivityRow(spec.name, spec.arch_id, m, s, c)
                 for spec, m, s, c in zip(specs, measured_ms, summed, calibrated))
    report = AdditivityReport(n=len(specs), before=before, after=after, calibration=calibration, fitted=fit,
                              rows=rows)
    if fit and calibration is not None:
        summary = report.to_dict()
        lut.set_calibration(calibration, {key: summary[key] for key in ("n", "before", "after")})
    return report


def measure_end_to_end(backend: Any, specs: Sequence[ArchSpec],
                       progress: Callable[[int, int, ArchSpec], None] | None = None) -> list[float]:
    """End-to-end medians of ``specs`` in order (one worker for all of them where the backend
    allows), reporting each as it finishes."""
    results: list[float] = [0.0] * len(specs)
    iterate = getattr(backend, "measure_iter", None)
    outcomes = iterate(list(specs)) if iterate is not None else enumerate(backend.measure_many(list(specs)))
    for done, (index, result) in enumerate(outcomes, 1):
        results[index] = result.estimate_ms
        if progress is not None:
            progress(done, len(specs), specs[index])
    return results


def build_and_calibrate(lut: LatencyLUT, backend: Any, specs: Sequence[ArchSpec],
                        calibration_specs: Sequence[ArchSpec] = (), *, measure_backend: Any = None, chunk: int = 40,
                        progress: Callable[[int, int, Piece], None] | None = None,
                        measure_progress: Callable[[int, int, ArchSpec], None] | None = None,
                        ) -> tuple[BuildReport, AdditivityReport | None]:
    """Complete ``lut`` with every piece of ``specs`` and ``calibration_specs``, then, when
    calibration specs are given, measure them end to end (with ``measure_backend``, default
    ``backend``) and fit the table's calibration on them."""
    pieces = unique_pieces([*specs, *calibration_specs], lut.resolution)
    built = build_lut(lut, backend, pieces, chunk=chunk, progress=progress)
    if not calibration_specs:
        return built, None
    measured = measure_end_to_end(measure_backend or backend, calibration_specs, measure_progress)
    return built, additivity_check(lut, calibration_specs, measured)
