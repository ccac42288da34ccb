"""The device stamp: everything that changes a latency figure besides the network itself.

Results and look-up tables carry a :class:`DeviceStamp`; results with different stamps are
never mixed (the cache keys on :attr:`DeviceStamp.key`, a table refuses a foreign stamp).
Computing a stamp is cheap and does not import MindSpore.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from latency.errors import UnknownDeviceError
from nas.spec.checks import check_int

DEVICE_TARGETS = ("CPU", "GPU", "Ascend")
MODES = ("GRAPH", "PYNATIVE")
RUNTIMES = ("mindspore", "onnxruntime")
PROTOCOLS = ("paired", "plain")


def parse_device(device: str) -> tuple[str, int | None]:
    """``"cpu"``, ``"GPU:1"``, ``"Ascend:0"`` -> (target, device id). Unknown -> UnknownDeviceError."""
    if not isinstance(device, str) or not device.strip():
        raise UnknownDeviceError(f"unknown device {device!r}; known: {list(DEVICE_TARGETS)} (optionally ':<id>')")
    match = re.fullmatch(r"\s*([A-Za-z]+)\s*(?::\s*(\d+))?\s*", device)
    by_lower = {target.lower(): target for target in DEVICE_TARGETS}
    if match is None or match.group(1).lower() not in by_lower:
        raise UnknownDeviceError(f"unknown device {device!r}; known: {list(DEVICE_TARGETS)} (optionally ':<id>')")
    target = by_lower[match.group(1).lower()]
    index = int(match.group(2)) if match.group(2) is not None else None
    if target == "CPU" and index not in (None, 0):
        raise UnknownDeviceError(f"unknown device {device!r}; the CPU target has no device id")
    return target, index


def device_name(device: str) -> str:
    """The canonical spelling of ``device`` (``"gpu:1"`` -> ``"GPU:1"``), used to name its lock."""
    target, index = parse_device(device)
    return target if index is None else f"{target}:{index}"


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def mindspore_version() -> str:
    """The installed MindSpore version, read without importing MindSpore: its ``version.py``,
    else the package metadata of any of its distributions (mindspore, mindspore-gpu, ...)."""
    found = importlib.util.find_spec("mindspore")
    if found is not None and found.submodule_search_locations:
        for folder in found.submodule_search_locations:
            try:
                text = (Path(folder) / "version.py").read_text()
            except OSError:
                continue
            match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
            if match:
                return match.group(1)
    for distribution in ("mindspore", "mindspore-gpu", "mindspore-ascend", "mindspore-cpu"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not-installed"


@functools.lru_cache(maxsize=None)
def accelerator_model(target: str, index: int | None) -> str:
    """The accelerator's model name where a vendor tool reports it, else ``unknown``."""
    tool = {"GPU": ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], "Ascend": ["npu-smi", "info"]}
    command = tool.get(target)
    if command is None or shutil.which(command[0]) is None:
        return "unknown"
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if target == "GPU" and lines:
        return lines[min(index or 0, len(lines) - 1)]
    for line in lines:  # npu-smi: the first table row names the chip, e.g. "| 0  910B ..."
        found = re.search(r"\b(9\d\d\w*|310\w*)\b", line)
        if found:
            return f"Ascend {found.group(1)}"
    return "unknown"


@dataclass(frozen=True)
class DeviceStamp:
    """What a latency figure was measured on and how."""

    device: str
    device_model: str
    cpu_model: str
    cores: int
    threads: int
    mindspore_version: str
    batch: int
    resolution: int
    mode: str = "GRAPH"
    runtime: str = "mindspore"  # what runs the network: MindSpore itself, or ONNX Runtime on its export
    runtime_version: str = ""  # ONNX Runtime's version and execution provider, for onnxruntime
    protocol: str = "plain"  # plain: absolute medians; paired: ratios to an anchor network

    def __post_init__(self) -> None:
        if self.device not in DEVICE_TARGETS:
            raise UnknownDeviceError(f"unknown device {self.device!r}; known: {list(DEVICE_TARGETS)}")
        for name in ("cores", "threads", "batch", "resolution"):
            check_int(f"stamp.{name}", getattr(self, name), 1)
        if self.mode not in MODES:
            raise ValueError(f"stamp.mode: must be one of {list(MODES)} (got {self.mode!r})")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"stamp.runtime: must be one of {list(RUNTIMES)} (got {self.runtime!r})")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"stamp.protocol: must be one of {list(PROTOCOLS)} (got {self.protocol!r})")

    @property
    def key(self) -> str:
        """A stable text key; equal keys mean comparable measurements."""
        key = (f"{self.device}|{self.device_model}|{self.cpu_model}|c{self.cores}|t{self.threads}"
               f"|ms{self.mindspore_version}|b{self.batch}|r{self.resolution}|{self.mode}")
        if self.runtime != "mindspore":  # MindSpore + plain keeps the keys of caches and tables made before
            key += f"|{self.runtime}{self.runtime_version}"
        if self.protocol != "plain":
            key += f"|{self.protocol}"
        return key

    def with_resolution(self, resolution: int) -> "DeviceStamp":
        return dataclasses.replace(self, resolution=resolution)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeviceStamp":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"stamp: unknown key {unknown[0]!r}; allowed: {sorted(names)}")
        missing = sorted(names - set(data) - {"mode", "runtime", "runtime_version", "protocol"})
        if missing:
            raise ValueError(f"stamp: missing key {missing[0]!r}")
        return cls(**dict(data))

    def brief(self) -> str:
        """What a plot's latency axis shows: runtime, threads, resolution and batch."""
        runtime = "MindSpore" if self.runtime == "mindspore" else "ONNX Runtime"
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"{self.device}, {runtime}, {threads}, {self.resolution} px, batch {self.batch}"

    def describe(self) -> str:
        """One human-readable line."""
        model = self.cpu_model if self.device == "CPU" else f"{self.device_model} (host {self.cpu_model})"
        runtime = (f"MindSpore {self.mindspore_version}, {self.mode}" if self.runtime == "mindspore"
                   else f"ONNX Runtime {self.runtime_version} (export by MindSpore {self.mindspore_version})")
        return (f"{self.device} {model}, {self.threads}/{self.cores} threads, {runtime}, batch {self.batch}, "
                f"{self.resolution} px, {self.protocol} protocol")


def local_stamp(device: str, *, threads: int, batch: int, resolution: int, mode: str = "GRAPH",
                runtime: str = "mindspore", protocol: str = "plain") -> DeviceStamp:
    """The stamp of this host for ``device``."""
    target, index = parse_device(device)
    model = cpu_model() if target == "CPU" else accelerator_model(target, index)
    version = onnxruntime_version() if runtime == "onnxruntime" else ""
    return DeviceStamp(device=target, device_model=model, cpu_model=cpu_model(), cores=available_cores(),
                       threads=threads, mindspore_version=mindspore_version(), batch=batch,
                       resolution=resolution, mode=mode, runtime=runtime, runtime_version=version, protocol=protocol)


@functools.lru_cache(maxsize=None)
def onnxruntime_version() -> str:
    """ONNX Runtime's version and the execution provider used (``1.32.0/CPUExecutionProvider``),
    read from the package metadata without importing it; empty when it is not installed."""
    try:
        return f"{importlib.metadata.version('onnxruntime')}/CPUExecutionProvider"
    except importlib.metadata.PackageNotFoundError:
        return ""
