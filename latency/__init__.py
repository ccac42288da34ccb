"""Latency: measured device latency, look-up tables and a calibrated predictor.

- :class:`LatencyBackend`: the protocol (``stamp``, ``measure``, ``measure_many``).
- :class:`MindSporeBackend`: measures on the local device in isolated worker processes, holding
  the device lock exclusively (training holds it shared).
- :class:`CachedBackend` + :class:`LatencyCache`: SQLite cache keyed by (arch_id, stamp).
- :class:`RayLatencyBackend` (:mod:`latency.remote`): a Ray actor on the device host.
- :class:`LatencyLUT` (:mod:`latency.lut`): per-layer tables with interpolation and calibration.

Importing this package does not import MindSpore or Ray.
"""
from __future__ import annotations

from typing import Any

from latency.backend import LatencyBackend, PieceBackend
from latency.errors import (CacheCorruptError, DeviceUnavailableError, LatencyError, LUTCorruptError, LUTMissError,
                            MeasurementCrash, MeasurementError, MeasurementTimeout, StampMismatchError,
                            UnbuildableSpecError, UnknownDeviceError)
from latency.result import LatencyResult, summarize
from latency.stamp import DeviceStamp

_LAZY = {
    "MindSporeBackend": "latency.mindspore_backend",
    "LatencyCache": "latency.cache",
    "CachedBackend": "latency.cache",
    "default_cache_path": "latency.cache",
    "LatencyLUT": "latency.lut",
    "Calibration": "latency.lut",
    "build_lut": "latency.lut",
    "additivity_check": "latency.lut",
    "RayLatencyBackend": "latency.remote",
}

__all__ = ["LatencyBackend", "PieceBackend", "LatencyResult", "DeviceStamp", "summarize", "LatencyError",
           "UnknownDeviceError", "DeviceUnavailableError", "MeasurementError", "MeasurementTimeout",
           "MeasurementCrash", "UnbuildableSpecError", "StampMismatchError", "CacheCorruptError",
           "LUTCorruptError", "LUTMissError", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'latency' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
