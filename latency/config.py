"""Latency settings, and the one factory that turns them into a backend.

A :class:`LatencyConfig` says where latency comes from (``source``), on which device and how a
measurement is timed. It is the ``latency:`` section of a campaign config; NetAdapt, the look-up
table commands and ``nas latency measure`` build one too. :func:`make_backend` builds the
measuring backend from it, wrapped in the measurement cache unless ``cache`` is off.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from latency.cache import CachedBackend, LatencyCache
from latency.mindspore_backend import MindSporeBackend
from latency.remote import RayLatencyBackend
from latency.stamp import MODES, PROTOCOLS, RUNTIMES, parse_device
from nas.spec.checks import check_bool, check_choice, check_int, check_number, check_text

SOURCES = ("measure", "lut", "both", "screen")


@dataclass(frozen=True)
class LatencyConfig:
    """Where latency comes from: ``measure`` on the device, a ``lut`` prediction (the directory's
    fitted predictor, else its look-up table), ``both`` (the measurement counts; the prediction is
    kept beside it), or ``screen``: every candidate is predicted, and measured only where its
    reward, with the latency at the optimistic end of the predictor's error band, could enter the
    campaign's ``screen_top_k`` best (``screen`` needs a fitted predictor). The rest is the device
    and the timing protocol (see :class:`~latency.mindspore_backend.MindSporeBackend`).

    ``resolution`` ``None`` measures each spec at its own resolution. ``threads`` is 1 by default,
    as MnasNet measured (one big core of a Pixel 1, single thread) and as stays repeatable on a
    small host: on a 2-core VM, 2 threads measured 1.3-1.9x slower than 1 and drifted 1.0-1.9x
    within an hour, and a predictor fitted on them was within +-10% for a third of its networks
    (one thread: 80%). ``None`` uses every core this process may run on.

    ``address`` (a Ray cluster address) measures on the cluster's device host, through the
    :class:`~latency.remote.RayLatencyBackend` actor that holds the ``latency_device:<target>``
    resource; ``None`` measures on this host.
    """

    source: str = "measure"
    device: str = "CPU"
    batch: int = 1
    resolution: int | None = None
    threads: int | None = 1
    mode: str = "GRAPH"
    lut: str | None = None
    cache: bool = True
    warmup: int = 10
    min_repeats: int = 10
    max_repeats: int = 100
    tolerance: float = 0.02
    timeout_s: float = 300.0
    protocol: str = "paired"
    runtime: str | None = None  # None: onnxruntime on a CPU, mindspore on GPU and Ascend
    max_seconds: float = 30.0
    block_calls: int | None = None
    address: str | None = None
    screen_top_k: int = 5

    def __post_init__(self) -> None:
        check_choice("latency.source", self.source, SOURCES)
        check_text("latency.device", self.device)
        parse_device(self.device)  # UnknownDeviceError names the device
        if self.source in ("lut", "both", "screen") and not self.lut:
            raise ValueError(f"latency.lut: source {self.source!r} needs a look-up table directory")
        check_int("latency.batch", self.batch, 1)
        check_int("latency.screen_top_k", self.screen_top_k, 1)
        if self.resolution is not None:
            check_int("latency.resolution", self.resolution, 8)
        if self.threads is not None:
            check_int("latency.threads", self.threads, 1)
        check_choice("latency.mode", self.mode, MODES)
        check_bool("latency.cache", self.cache)
        check_int("latency.warmup", self.warmup, 0)
        check_int("latency.min_repeats", self.min_repeats, 1)
        check_int("latency.max_repeats", self.max_repeats, self.min_repeats)
        check_number("latency.tolerance", self.tolerance, 0.0, low_open=True)
        check_number("latency.timeout_s", self.timeout_s, 0.0, low_open=True)
        check_choice("latency.protocol", self.protocol, PROTOCOLS)
        if self.runtime is not None:
            check_choice("latency.runtime", self.runtime, RUNTIMES)
            if self.runtime == "onnxruntime" and parse_device(self.device)[0] != "CPU":
                raise ValueError(f"latency.runtime: 'onnxruntime' measures CPU targets, not {self.device!r}; "
                                 "use runtime: mindspore")
        check_number("latency.max_seconds", self.max_seconds, 0.0, low_open=True)
        if self.block_calls is not None:
            check_int("latency.block_calls", self.block_calls, 1)
        if self.address is not None:
            check_text("latency.address", self.address)

    @property
    def resolved_runtime(self) -> str:
        """The runtime that measures: ``runtime``, or the device's default (ONNX Runtime on a CPU:
        the deployment runtime, 5-30x faster than MindSpore's CPU runtime on the same networks,
        see the README's latency section)."""
        if self.runtime is not None:
            return self.runtime
        return "onnxruntime" if parse_device(self.device)[0] == "CPU" else "mindspore"


def make_backend(config: LatencyConfig, *, resolution: int | None = None, cache_path: str | Path | None = None,
                 remeasure: bool = False) -> MindSporeBackend | RayLatencyBackend | CachedBackend:
    """The measuring backend of ``config`` (``resolution`` overrides the config's), cached per
    device stamp in ``cache_path`` (default ``$NAS_CACHE_DIR/latency.db``) unless ``config.cache``
    is off. With ``config.address`` it is the Ray device actor of that cluster."""
    options = {"batch": config.batch, "resolution": resolution or config.resolution, "threads": config.threads,
               "mode": config.mode, "warmup": config.warmup, "min_repeats": config.min_repeats,
               "max_repeats": config.max_repeats, "tolerance": config.tolerance, "timeout_s": config.timeout_s,
               "protocol": config.protocol, "runtime": config.resolved_runtime, "max_seconds": config.max_seconds,
               "block_calls": config.block_calls}
    backend: MindSporeBackend | RayLatencyBackend
    if config.address is not None:
        backend = RayLatencyBackend(config.device, address=config.address, **options)
    else:
        backend = MindSporeBackend(config.device, **options)
    if not config.cache:
        return backend
    return CachedBackend(backend, LatencyCache(cache_path, config.tolerance), remeasure=remeasure)
