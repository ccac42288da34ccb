"""Shared pieces of the latency tests: tiny specs and fast measurement settings."""
from __future__ import annotations

import pytest

from latency.server import running_servers, stop_server
from nas.spec import ArchSpec, BlockSpec, HeadSpec, SESpec, StemSpec

# Few repeats, small inputs: the tests check behaviour, the benchmark checks numbers.
# Ten calls are the fewest whose median has an order-statistics interval, so a result can be precise.
FAST = {"warmup": 1, "min_repeats": 10, "max_repeats": 12, "tolerance": 0.5, "timeout_s": 120.0, "protocol": "plain",
        "runtime": "mindspore"}
# The paired protocol, as fast: two calls a block, at least two blocks, a 5 s cap.
PAIRED = {**FAST, "protocol": "paired", "block_calls": 2, "min_blocks": 2, "max_seconds": 5.0}


def tiny_spec(mid: int = 16, out: int = 8, resolution: int = 16, se: bool = False, name: str = "tiny") -> ArchSpec:
    """Stem 8, one mbconv layer (expansion ``mid``), a small head."""
    block = BlockSpec(kind="mbconv", out=out, kernel=(3,), stride=1, repeats=1, expand=(mid,),
                      se=SESpec(0.25) if se else None, skip="none")
    return ArchSpec(stem=StemSpec(channels=8), blocks=(block,), head=HeadSpec(kind="mnasnet", channels=16),
                    resolution=resolution, num_classes=10, name=name)


def big_spec(resolution: int = 32) -> ArchSpec:
    """Much more work than :func:`tiny_spec`: wide layers at full resolution."""
    blocks = (BlockSpec(kind="mbconv", out=64, kernel=(5,), stride=1, repeats=3, expand=(384, 384, 384)),
              BlockSpec(kind="conv", out=128, kernel=(3,), stride=1, repeats=2))
    return ArchSpec(stem=StemSpec(channels=64, stride=1), blocks=blocks, head=HeadSpec(kind="mnasnet", channels=256),
                    resolution=resolution, num_classes=10, name="big")


def stop_servers() -> None:
    """Stop the device servers of the current lock directory."""
    for info in running_servers():
        if info.alive:
            stop_server(info.pid)


@pytest.fixture
def private_latency_dirs(tmp_path, monkeypatch):
    """A lock directory and a cache (with its anchor store) of the test's own; its device servers
    are stopped after it."""
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path
    stop_servers()
