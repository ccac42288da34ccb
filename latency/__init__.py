"""Latency: measured device latency, look-up tables and a calibrated predictor.

- :class:`LatencyBackend`: the protocol (``stamp``, ``measure``, ``measure_many``).
- :class:`LatencyConfig` and :func:`make_backend`: settings, and the one factory of a backend.
- :class:`MindSporeBackend`: measures on the local device in isolated worker processes, holding
  the device lock exclusively (training holds it shared).
- :class:`CachedBackend` + :class:`LatencyCache`: SQLite cache keyed by (arch_id, stamp).
- :class:`RayLatencyBackend` (:mod:`latency.remote`): a Ray actor on a device host.
- :class:`LatencyLUT` (:mod:`latency.lut`): per-layer tables with interpolation and calibration.

Importing this package imports neither MindSpore nor Ray: measurement runs in worker processes.
"""
from __future__ import annotations

from latency.backend import LatencyBackend, PieceBackend
from latency.cache import CachedBackend, LatencyCache, default_cache_path
from latency.config import LatencyConfig, make_backend
from latency.errors import (
    CacheCorruptError,
    DeviceUnavailableError,
    LatencyError,
    LUTCorruptError,
    LUTMissError,
    MeasurementCrash,
    MeasurementError,
    MeasurementTimeout,
    StampMismatchError,
    UnbuildableSpecError,
    UnknownDeviceError,
)
from latency.lut import AdditivityReport, Calibration, LatencyLUT, additivity_check, build_and_calibrate, build_lut
from latency.mindspore_backend import MindSporeBackend
from latency.remote import RayLatencyBackend
from latency.result import LatencyResult, summarize
from latency.stamp import DeviceStamp

__all__ = ["LatencyBackend", "PieceBackend", "LatencyConfig", "make_backend", "LatencyResult", "DeviceStamp",
           "summarize", "MindSporeBackend", "CachedBackend", "LatencyCache", "default_cache_path", "LatencyLUT",
           "Calibration", "AdditivityReport", "build_lut", "build_and_calibrate", "additivity_check",
           "RayLatencyBackend", "LatencyError", "UnknownDeviceError", "DeviceUnavailableError", "MeasurementError",
           "MeasurementTimeout", "MeasurementCrash", "UnbuildableSpecError", "StampMismatchError",
           "CacheCorruptError", "LUTCorruptError", "LUTMissError"]
