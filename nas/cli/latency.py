"""``nas latency measure|build-lut|fit|check|predict``: measured latency, look-up tables and the fitted
predictor."""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from latency.config import LatencyConfig, make_backend
from latency.errors import LUTMissError, StampMismatchError
from latency.fitting import fit_in_rounds
from latency.lut import (
    Accuracy,
    AdditivityReport,
    LatencyLUT,
    accuracy,
    additivity_check,
    build_and_calibrate,
    build_lut,
    measure_end_to_end,
)
from latency.mindspore_backend import MindSporeBackend
from latency.pieces import overhead_piece, unique_pieces
from latency.predictor import MODELS, UnseenKernelError, has_predictor, load_predictor
from latency.protocol import ANCHOR
from latency.remote import RayLatencyBackend
from latency.samples import ROLES, Sample, SampleStore, measure_missing
from latency.sampling import calibration_specs, load_spec_dir, source_specs, space_specs
from latency.server import running_servers, stop_server
from latency.stamp import PROTOCOLS, RUNTIMES, DeviceStamp
from nas.campaign.config import load_config
from nas.campaign.plots import pyplot
from nas.spec.arch import ArchSpec
from netadapt.grid import DEFAULT_GRID_STEP, grid_specs, netadapt_variants
from search_spaces import references


def _progress(label: str) -> Callable[[int, int, Any], None]:
    """A one-line counter on stderr with the elapsed time and an ETA (from the mean time per item so
    far), rewritten in place on a terminal."""
    terminal = sys.stderr.isatty()
    started = time.monotonic()

    def show(done: int, total: int, what: Any = None) -> None:
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else 0.0
        name = getattr(what, "name", "") or getattr(what, "kind", "") or ""
        text = f"{label}: {done}/{total} {name}  {elapsed:.0f} s, ETA {eta:.0f} s"
        if terminal:
            print(f"\r{text:<78}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done == total or done % 10 == 0 or done == 1:
            print(text, file=sys.stderr, flush=True)

    return show


def _settings(args: argparse.Namespace, **fields: Any) -> LatencyConfig:
    """The latency settings of the command line (``fields`` fix what the command decides)."""
    device = {"device": args.device, "batch": args.batch, "resolution": args.resolution, "threads": args.threads,
              "address": args.address}
    timing = {"warmup": args.warmup, "min_repeats": args.min_repeats, "max_repeats": args.max_repeats,
              "tolerance": args.tolerance, "timeout_s": args.timeout, "protocol": args.protocol,
              "runtime": args.runtime, "max_seconds": args.max_seconds}
    cache = {"cache": not getattr(args, "no_cache", False)}
    return LatencyConfig(**{**device, **timing, **cache, **fields})


def _bare(settings: LatencyConfig) -> MindSporeBackend | RayLatencyBackend:
    """The uncached backend of ``settings`` (pieces are cached by the table, not the cache)."""
    backend = make_backend(dataclasses.replace(settings, cache=False))
    assert isinstance(backend, (MindSporeBackend, RayLatencyBackend))
    return backend


def _measure(args: argparse.Namespace) -> int:
    spec = references.resolve(args.spec, args.width)
    source = make_backend(_settings(args), cache_path=args.cache, remeasure=args.remeasure)
    hits_before = getattr(source, "hits", 0)
    result = source.measure(spec)
    from_cache = getattr(source, "hits", 0) > hits_before
    if args.json:
        print(json.dumps({"name": spec.name, "arch_id": spec.arch_id, "cached": from_cache,
                          **result.to_dict(), "stamp_key": result.stamp.key}, indent=2))
        return 0
    origin = "cached" if from_cache else "measured"
    print(f"{spec.name}  arch_id {spec.arch_id}  {origin}")
    print(f"  {result.describe()}")
    if result.stamp.protocol == "paired":
        print(f"  anchor: {ANCHOR} at {result.stamp.resolution} px, {result.anchor_ms:.3f} ms pooled; "
              f"{result.blocks} blocks")
    print(f"  on {result.stamp.describe()}")
    return 0


def _server(args: argparse.Namespace) -> int:
    servers = running_servers()
    if args.server_command == "status":
        if not servers:
            print("no device server has run on this host (lock directory: see NAS_LOCK_DIR)")
        for info in servers:
            settings = info.settings
            state = "running" if info.alive else "gone"
            print(f"{info.key}  {state}  pid {info.pid}  {settings.get('device')} "
                  f"{settings.get('runtime')} threads {settings.get('threads')} batch {settings.get('batch')}  "
                  f"started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.started))}")
        return 0
    stopped = 0
    for info in servers:
        if info.alive:
            stop_server(info.pid)
            stopped += 1
    print(f"stopped {stopped} device server(s)")
    return 0


def _source_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.space:
        return {"kind": "space", "name": args.space, "samples": args.samples, "seed": args.seed}
    if args.specs:
        return {"kind": "specs", "dir": args.specs}
    return {"kind": "refs"}


def _print_note(note: str) -> None:
    print(f"source: {note}", file=sys.stderr)


def _build_lut(args: argparse.Namespace) -> int:
    source = _source_from_args(args)
    specs, note = source_specs(source, seed=args.seed)
    _print_note(note)
    if args.netadapt_grid:
        source["netadapt_grid_step"] = args.grid_step
        specs = [variant for spec in specs for variant in grid_specs(spec, grid_step=args.grid_step)]
    settings = _settings(args)
    backend = _bare(settings)
    lut = LatencyLUT(args.out, backend.stamp(resolution=args.resolution), source=source)
    calibrating = calibration_specs(source, args.calibrate, args.seed + 500, lut.resolution)
    wanted = [overhead_piece(), *unique_pieces([*specs, *calibrating], lut.resolution)]
    todo = len(lut.missing(wanted))
    print(f"build-lut: {len(specs)} networks, {len(wanted)} pieces at {lut.resolution} px; {todo} to measure "
          f"({len(wanted) - todo} already in {args.out}), then {len(calibrating)} calibration networks end "
          f"to end (up to {settings.max_seconds:g} s each, plus export); the ETA follows the first piece",
          file=sys.stderr, flush=True)
    built, report = build_and_calibrate(lut, backend, specs, calibrating,
                                        measure_backend=make_backend(settings, cache_path=args.cache),
                                        chunk=args.chunk, progress=_progress("build-lut"),
                                        measure_progress=_progress("measure end to end"))
    print(f"{args.out}: {built.describe()}; the table holds {len(lut)} entries")
    print(f"stamp: {lut.stamp.describe()}")
    if report is not None:
        _print_accuracy(report)
    return 0


def _fit(args: argparse.Namespace) -> int:
    space, options, settings, resolution = args.space, {}, _settings(args), args.resolution
    if args.campaign:  # the campaign's space (with its options) and its latency settings
        campaign = load_config(args.campaign)
        space, options = campaign.space.name, dict(campaign.space.options)
        resolution = campaign.measure_resolution()
        settings = dataclasses.replace(campaign.latency, source="measure", resolution=resolution,
                                       cache=not args.no_cache)
    backend = make_backend(settings, cache_path=args.cache)
    stamp = backend.stamp(resolution=resolution)
    LatencyLUT(args.lut, stamp, source={"kind": "fit", "space": space, "options": options, "seed": args.seed}).close()
    initial: list[tuple[str, list[ArchSpec]]] = []
    if args.refs:
        initial.append(("reference", [references.get(name) for name in references.names()]))
    if space and args.samples:
        initial.append(("space", space_specs(space, args.samples, seed=args.seed, options=options)[0]))
    if args.specs:
        initial.append(("space", load_spec_dir(args.specs)))
    if args.netadapt:
        initial.append(("netadapt", netadapt_variants(args.netadapt, seed=args.seed)))
    report = fit_in_rounds(args.lut, backend, stamp, initial, space=space, space_options=options, rounds=args.rounds,
                           per_round=args.per_round, model=args.model, seed=args.seed, progress=_progress,
                           log=lambda line: print(line, file=sys.stderr))
    predictor = report.predictor
    last = report.rounds[-1]
    print(f"{report.path}: model {predictor.kind}, fitted on {last.samples} networks")
    print("candidates (cross-validated, out-of-fold):")
    for candidate in last.candidates:
        print(f"  {candidate.describe()}")
    print(f"stamp: {stamp.describe()}")
    return 0


def _print_accuracy(report: AdditivityReport) -> None:
    before = report.before
    print(f"additivity (summed pieces vs measured, n={report.n}): {before.within_10pct:.0%} within +-10%, "
          f"Spearman {before.spearman:.3f}, mean |error| {before.mean_abs_pct_error:.1%}")
    if report.after is not None and report.calibration is not None:
        after, cal = report.after, report.calibration
        where = (f"in-sample, on the {report.n} networks it was fitted to; `nas latency check` on other samples "
                 "gives the held-out figure" if report.fitted else "on these networks, fitted on others")
        print(f"calibrated ({cal.a:.3f} * sum + {cal.b:.3f} ms): {after.within_10pct:.0%} within +-10%, "
              f"Spearman {after.spearman:.3f}, mean |error| {after.mean_abs_pct_error:.1%} ({where})")


def _check_settings(stamp: DeviceStamp, args: argparse.Namespace) -> LatencyConfig:
    """Settings that measure under ``stamp`` (its device, runtime, protocol, threads, batch)."""
    return LatencyConfig(device=stamp.device, batch=stamp.batch, resolution=stamp.resolution, threads=stamp.threads,
                         mode=stamp.mode, cache=not args.no_cache, warmup=args.warmup, min_repeats=args.min_repeats,
                         max_repeats=args.max_repeats, tolerance=args.tolerance, timeout_s=args.timeout,
                         runtime=stamp.runtime, protocol=stamp.protocol, max_seconds=args.max_seconds)


def _check_predictor(args: argparse.Namespace) -> int:
    """Held-out check of the fitted predictor: networks it was not fitted on, measured and stored
    under the role ``check`` (so a re-run measures nothing twice and fitting never uses them)."""
    predictor = load_predictor(args.lut)
    stamp = predictor.stamp
    backend = make_backend(_check_settings(stamp, args), cache_path=args.cache)
    if backend.stamp(resolution=stamp.resolution) != stamp:
        raise StampMismatchError(f"this host measures under [{backend.stamp(resolution=stamp.resolution).key}] but "
                                 f"the predictor in {args.lut} was fitted under [{stamp.key}]")
    source = _source_from_args(args) if (args.space or args.specs or args.refs) else {"kind": "space",
                                                                                      "name": "mnasnet"}
    seed = args.seed if args.seed is not None else 1000
    training = set(predictor.training)
    candidates, note = source_specs(source, samples=args.samples + len(training), seed=seed)
    specs, skipped = [], []
    for spec in candidates:
        if spec.arch_id in training or len(specs) >= args.samples:
            continue
        try:
            predictor.features(spec)
            specs.append(spec)
        except UnseenKernelError as error:
            skipped.append(str(error))
    for reason in skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    if not specs:
        raise UnseenKernelError(f"none of the check samples can be predicted by the predictor in {args.lut} "
                                f"({len(skipped)} have kernels it never saw); check networks like its training set")
    _print_note(f"{note} (check samples, none of the {len(training)} training networks)")
    store = SampleStore(args.lut, stamp)
    try:
        measure_missing(store, backend, specs, "check", _progress("measuring check networks"))
        labels = {sample.arch_id: sample for sample in store.samples(ROLES)}
    finally:
        store.close()
    rows = [(spec, labels[spec.arch_id], predictor.predict(spec)) for spec in specs]
    checked = accuracy([p for _, _, p in rows], [label.ms for _, label, _ in rows])
    inside = sum(label.ci_low <= p <= label.ci_high for _, label, p in rows) / len(rows)
    beyond = statistics.fmean(max(0.0, p - label.ci_high, label.ci_low - p) / label.ms for _, label, p in rows)
    plot = Path(args.plot) if args.plot else Path(args.lut) / "check.png"
    _scatter(plot, rows, predictor.kind, checked)
    if args.json:
        print(json.dumps({"model": predictor.kind, "accuracy": checked.to_dict(), "within_label_ci": inside,
                          "mean_error_beyond_label_ci": beyond, "plot": str(plot),
                          "rows": [{"name": spec.name, "arch_id": spec.arch_id, "measured_ms": label.ms,
                                    "ci_low_ms": label.ci_low, "ci_high_ms": label.ci_high, "predicted_ms": p}
                                   for spec, label, p in rows]}, indent=2))
        return 0
    header = f"{'name':<24} {'arch_id':<12} {'measured':>9} {'95% CI':>15} {'predicted':>9} {'err':>7}"
    print(header)
    print("-" * len(header))
    for spec, label, p in rows:
        print(f"{spec.name[:24]:<24} {spec.arch_id:<12} {label.ms:>9.3f} {label.ci_low:>7.3f}-{label.ci_high:<7.3f} "
              f"{p:>9.3f} {(p - label.ms) / label.ms:>+7.1%}")
    print("-" * len(header))
    print(f"fitted {predictor.kind} model, held out: {checked.describe()}")
    print(f"inside the label's own 95% CI: {inside:.0%}; mean error beyond the label's CI: {beyond:.1%}")
    print(f"scatter: {plot}")
    return 0


def _scatter(path: Path, rows: list[tuple[ArchSpec, Sample, float]], model: str, checked: Accuracy) -> None:
    """Predicted against measured latency, with each label's CI and the +-10% band."""
    plt = pyplot()
    measured = [label.ms for _, label, _ in rows]
    predicted = [p for _, _, p in rows]
    errors = [[label.ms - label.ci_low for _, label, _ in rows], [label.ci_high - label.ms for _, label, _ in rows]]
    figure, axes = plt.subplots(figsize=(5.5, 5))
    low, high = min(measured + predicted) * 0.9, max(measured + predicted) * 1.1
    axes.plot([low, high], [low, high], color="black", linewidth=1)
    axes.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1], color="grey", alpha=0.2,
                      label="+-10%")
    axes.errorbar(measured, predicted, xerr=errors, fmt="o", markersize=3, linewidth=0.8, label="held-out networks")
    axes.set_xlabel("measured latency (ms, with 95% CI)")
    axes.set_ylabel(f"predicted latency (ms, {model})")
    axes.set_title(f"{checked.within_10pct:.0%} within +-10%, Spearman {checked.spearman:.3f} (n={checked.n})")
    axes.legend(loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def _check(args: argparse.Namespace) -> int:
    if has_predictor(args.lut) and not args.table:
        return _check_predictor(args)
    lut = LatencyLUT(args.lut)
    if args.space or args.specs or args.refs:
        source = _source_from_args(args)
    elif lut.sources:
        source = dict(lut.sources[0])
    else:
        source = {"kind": "refs"}
    seed = args.seed if args.seed is not None else int(source.get("seed", 0)) + 1000
    specs, note = source_specs(source, samples=args.samples, seed=seed)
    _print_note(note + " (check samples)")
    stamp = lut.stamp
    settings = _check_settings(stamp, args)
    backend = _bare(settings)
    if backend.stamp(resolution=stamp.resolution) != stamp:
        raise StampMismatchError(f"this host measures under [{backend.stamp(resolution=stamp.resolution).key}] but "
                                 f"the table {args.lut} was built under [{stamp.key}]; check it on its own device")
    missing = lut.missing(unique_pieces(specs, lut.resolution))
    skipped = []
    if missing and args.extend:
        report = build_lut(lut, backend, missing, progress=_progress("check: measuring missing pieces"))
        print(f"added {report.measured} missing pieces to {args.lut}", file=sys.stderr)
    elif missing:
        kept = []
        for spec in specs:
            try:
                lut.predict_summed(spec)
                kept.append(spec)
            except LUTMissError as error:
                skipped.append((spec, str(error)))
        specs = kept
    if not specs:
        raise LUTMissError(f"none of the {len(skipped)} check samples can be predicted from {args.lut}; "
                           f"run with --extend")
    measured = measure_end_to_end(make_backend(settings, cache_path=args.cache), specs,
                                  _progress("measure end to end"))
    checked = additivity_check(lut, specs, measured, fit=args.calibrate)
    if args.json:
        print(json.dumps({**checked.to_dict(), "skipped": [spec.name for spec, _ in skipped]}, indent=2))
        return 0
    header = f"{'name':<34} {'arch_id':<12} {'measured':>9} {'summed':>9} {'err':>7} {'predicted':>9} {'err':>7}"
    print(header)
    print("-" * len(header))
    for row in checked.rows:
        summed_error = (row.summed_ms - row.measured_ms) / row.measured_ms
        line = (f"{row.name[:34]:<34} {row.arch_id:<12} {row.measured_ms:>9.3f} {row.summed_ms:>9.3f} "
                f"{summed_error:>+7.1%}")
        if row.calibrated_ms is not None:
            line += f" {row.calibrated_ms:>9.3f} {(row.calibrated_ms - row.measured_ms) / row.measured_ms:>+7.1%}"
        print(line)
    print("-" * len(header))
    _print_accuracy(checked)
    if checked.after is None:
        print("no calibration in this table (run with --calibrate to fit one on these samples)")
    for spec, reason in skipped:
        print(f"skipped {spec.name}: {reason}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    spec = references.resolve(args.spec, args.width)
    if has_predictor(args.lut) and not args.breakdown:
        predictor = load_predictor(args.lut)
        print(f"{spec.name}  arch_id {spec.arch_id}  predicted {predictor.predict(spec):.3f} ms by the fitted "
              f"{predictor.kind} model at {predictor.resolution} px")
        return 0
    lut = LatencyLUT(args.lut)
    if args.breakdown:
        for piece, ms, how in lut.breakdown(spec):
            print(f"{piece.name:<14} {ms:>9.3f} ms  {how:<12} {piece.key}")
        print(f"{'overhead':<14} {lut.overhead_ms:>9.3f} ms  (counted once)")
    summed = lut.predict_summed(spec)
    predicted = lut.predict(spec)
    print(f"{spec.name}  arch_id {spec.arch_id}  predicted {predicted:.3f} ms (summed {summed:.3f} ms"
          f"{', calibrated' if lut.calibration is not None else ', no calibration'}) at {lut.resolution} px")
    return 0


def _device_options(parser: argparse.ArgumentParser, resolution_default: int | None, resolution_help: str) -> None:
    parser.add_argument("--device", default="CPU", help="CPU, GPU[:id] or Ascend[:id] (default CPU)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--resolution", type=int, default=resolution_default, help=resolution_help)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default: 1, as MnasNet measured; several threads on a small shared host "
                             "drift by up to 2x within an hour)")
    parser.add_argument("--address", default=None,
                        help="measure on the device host of this Ray cluster (one started with ray start "
                             "--resources='{\"latency_device:CPU\": 1}'); default: this host")
    _timing_options(parser)


def _timing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument("--min-repeats", type=int, default=10, help="fewest timed runs (default 10)")
    parser.add_argument("--max-repeats", type=int, default=100, help="most timed runs per measurement (default 100)")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="stop when the estimate's 95%% interval is within this fraction (default 0.02)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds without progress before the device "
                                                                     "server is killed (default 300)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="paired",
                        help="paired: interleaved with an anchor network, a ratio at the anchor's pooled scale "
                             "(default); plain: the median of single calls")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                        help="what runs the network: onnxruntime (its ONNX export; the CPU default) or mindspore "
                             "(the default on GPU and Ascend)")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="time cap of one paired measurement; past it the result is flagged imprecise "
                             "(default 30)")


def _cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, help="cache file (default $NAS_CACHE_DIR/latency.db)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the measurement cache")


def _source_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--space", default=None, help="sample specs from this search space (e.g. mnasnet; "
                                                     "'refs' = random variants of the references)")
    group.add_argument("--specs", default=None, help="a directory of spec YAML files")
    group.add_argument("--refs", action="store_true", help="the shipped reference architectures")


def configure_latency(latency: argparse.ArgumentParser) -> None:
    actions = latency.add_subparsers(dest="latency_command", metavar="ACTION")
    actions.required = True

    measure = actions.add_parser("measure", help="measure a reference or spec file end to end on this device")
    measure.add_argument("spec", help="reference name (see 'nas spec list') or a spec YAML file")
    measure.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0)")
    _device_options(measure, None, "input resolution (default: the spec's)")
    measure.add_argument("--json", action="store_true", help="print the result as JSON")
    _cache_options(measure)
    measure.add_argument("--remeasure", action="store_true", help="measure again and overwrite the cached figure")
    measure.set_defaults(handler=_measure)

    build = actions.add_parser("build-lut", help="measure every unique layer of a source into a look-up table",
                               description="Incremental and resumable: re-running measures only what is missing.")
    _source_options(build, required=True)
    build.add_argument("--out", required=True, help="the table's directory (created or extended)")
    build.add_argument("--samples", type=int, default=50, help="specs sampled from --space (default 50)")
    build.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    build.add_argument("--netadapt-grid", action="store_true",
                       help="also every layer on NetAdapt's pruning grid of each spec (netadapt.grid; multiples of 8)")
    build.add_argument("--grid-step", type=int, default=DEFAULT_GRID_STEP,
                       help=f"every n-th width on that grid (default {DEFAULT_GRID_STEP}, as nas netadapt's)")
    build.add_argument("--calibrate", type=int, default=10, metavar="N",
                       help="fit the calibration on N end-to-end measurements (default 10; 0 = none)")
    build.add_argument("--chunk", type=int, default=40, help="pieces per worker process (default 40)")
    _device_options(build, 224, "input resolution (default 224)")
    _cache_options(build)
    build.set_defaults(handler=_build_lut)

    check = actions.add_parser("check", help="predicted against measured latency on held-out specs (measured under "
                                             "the directory's own stamp: device, runtime, protocol, threads, "
                                             "batch); the fitted predictor where there is one, else the table")
    check.add_argument("--lut", required=True, help="the table's directory")
    check.add_argument("--samples", type=int, default=50, help="how many specs (default 50)")
    check.add_argument("--seed", type=int, default=None, help="sampling seed (default: the table's + 1000)")
    _source_options(check, required=False)
    check.add_argument("--extend", action=argparse.BooleanOptionalAction, default=True,
                       help="measure pieces the table lacks first (default); --no-extend skips such specs")
    check.add_argument("--calibrate", action="store_true", help="fit the calibration on these samples and save it")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--table", action="store_true",
                       help="check the summed look-up table even where the directory has a fitted predictor")
    check.add_argument("--plot", default=None,
                       help="where the predicted-against-measured scatter goes (default DIR/check.png)")
    _timing_options(check)
    _cache_options(check)
    check.set_defaults(handler=_check)

    predict = actions.add_parser("predict", help="predict a spec's latency from a look-up table")
    predict.add_argument("spec", help="reference name or spec YAML file")
    predict.add_argument("--lut", required=True, help="the table's directory")
    predict.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0)")
    predict.add_argument("--breakdown", action="store_true", help="per-piece latencies")
    predict.set_defaults(handler=_predict)

    fit = actions.add_parser(
        "fit", help="measure whole networks and fit a latency predictor on them (stored in --lut)",
        description="Measures the references, --samples networks of --space and --netadapt pruned networks end "
                    "to end, fits every candidate model (madds, nnls, gbt, nnls+gbt), keeps the best by "
                    "cross-validated accuracy, then adds --per-round networks per adaptive round where the "
                    "held-out error is largest. Resumable: every measurement is stored as it finishes.")
    fit.add_argument("--lut", required=True, help="the directory (a look-up table's, or a new one)")
    fit.add_argument("--space", default="mnasnet", help="search space to sample (default mnasnet)")
    fit.add_argument("--campaign", default=None, metavar="CONFIG",
                     help="fit for a campaign: its space (with its options) and its latency settings (device, "
                          "runtime, threads, batch, resolution, protocol) instead of --space and the options below")
    fit.add_argument("--samples", type=int, default=100, help="networks sampled from --space (default 100)")
    fit.add_argument("--specs", default=None, help="also a directory of spec YAML files")
    fit.add_argument("--refs", action=argparse.BooleanOptionalAction, default=True,
                     help="also the shipped references (default)")
    fit.add_argument("--netadapt", type=int, default=30, metavar="N",
                     help="also N NetAdapt-pruned MobileNetV3-Small/-Large and MnasNet-A1 (default 30)")
    fit.add_argument("--rounds", type=int, default=2, help="adaptive rounds (default 2; 0 = none)")
    fit.add_argument("--per-round", type=int, default=10, help="networks added per adaptive round (default 10)")
    fit.add_argument("--model", choices=("auto", *MODELS), default="auto",
                     help="the model to fit (default auto: the best cross-validated candidate)")
    fit.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    _device_options(fit, 224, "input resolution (default 224)")
    _cache_options(fit)
    fit.set_defaults(handler=_fit)

    server = actions.add_parser("server", help="inspect or stop this host's device servers")
    server.add_argument("server_command", choices=("status", "stop"), help="status: list them; stop: end them")
    server.set_defaults(handler=_server)
