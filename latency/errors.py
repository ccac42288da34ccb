"""Named errors of the latency package. All are :class:`nas.spec.errors.NasError`, so the CLI
reports them as one line with exit code 2."""
from __future__ import annotations

from nas.spec.errors import NasError


class LatencyError(NasError):
    """Base of every latency error."""


class UnknownDeviceError(LatencyError, ValueError):
    """The device target is not one of CPU, GPU or Ascend."""


class DeviceUnavailableError(LatencyError):
    """The device target is known but this host (or Ray cluster) cannot run on it."""


class MeasurementError(LatencyError):
    """A measurement failed inside the isolated worker."""


class MeasurementTimeout(MeasurementError):
    """The isolated worker made no progress within the timeout and was killed."""


class MeasurementCrash(MeasurementError):
    """The isolated worker died (a signal or a non-zero exit) before it finished."""


class UnbuildableSpecError(MeasurementError):
    """MindSpore could not build or compile the network (or layer) of a spec."""


class StampMismatchError(LatencyError):
    """Results taken under one device stamp were about to be mixed with another."""


class CacheCorruptError(LatencyError):
    """The measurement cache file is not a readable cache database. It is left untouched."""


class LUTCorruptError(LatencyError):
    """A look-up table directory is unreadable. It is left untouched."""


class CalibrationError(LatencyError, ValueError):
    """A look-up table's calibration cannot be fitted sensibly (too few networks, a slope <= 0)."""


class LUTMissError(LatencyError, LookupError):
    """A layer is not in the look-up table and lies outside what it can interpolate."""

    def __str__(self) -> str:  # LookupError would otherwise quote the message like a KeyError
        return str(self.args[0]) if self.args else type(self).__name__
