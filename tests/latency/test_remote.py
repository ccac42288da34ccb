"""The device actor on a Ray cluster started with ``ray start``, as a device host would run it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latency.remote import RayLatencyBackend
from nas.runtime.cluster import RayClusterError
from tests.support.cli import run_nas
from tests.support.latency import FAST, tiny_spec

pytestmark = pytest.mark.slow  # starts a Ray cluster and measures through it

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def device_host(tmp_path_factory):
    """``ray start --head`` offering ``latency_device:CPU``: this machine is the cluster's device host."""
    folder = tmp_path_factory.mktemp("device-host")
    port = _free_port()
    env = dict(os.environ, GLOG_v="3", RAY_USAGE_STATS_ENABLED="0", NAS_LOCK_DIR=str(folder / "locks"),
               NAS_CACHE_DIR=str(folder / "cache"), NAS_SERVER_IDLE_S="60")
    env.pop("RAY_ADDRESS", None)
    subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats", '--resources={"latency_device:CPU": 1}'],
                   check=True, env=env, capture_output=True, timeout=180)
    yield f"127.0.0.1:{port}", env
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=180)


def test_backends_of_the_same_settings_share_one_actor_and_a_dead_one_is_started_again(device_host) -> None:
    import ray

    address, _ = device_host
    spec = tiny_spec(resolution=16)
    try:
        first = RayLatencyBackend("CPU", address=address, start_timeout_s=60, **FAST)
        second = RayLatencyBackend("CPU", address=address, start_timeout_s=60, **FAST)
        assert first.name == second.name and first.host == second.host  # one actor, one process
        result = second.measure(spec)
        assert result.median_ms > 0 and result.stamp == first.stamp(spec)
        os.kill(int(first.host["pid"]), signal.SIGKILL)  # the actor dies between two measurements
        time.sleep(1)
        again = first.measure(spec)
        assert again.median_ms > 0 and first.host["pid"] != second.host["pid"]
        first.close()  # ends the shared actor and frees the device resource...
        other = RayLatencyBackend("CPU", address=address, start_timeout_s=60, **{**FAST, "min_repeats": 11})
        assert other.name != first.name and other.measure(spec).median_ms > 0  # ...for other settings' actor
        other.close()
        assert second.measure(spec).median_ms > 0  # a later call starts the shared one again
        second.close()
    finally:
        ray.shutdown()


def test_nas_latency_measure_reaches_the_device_host_and_a_dead_address_is_one_line(device_host, tmp_path) -> None:
    address, _ = device_host
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(tiny_spec(resolution=16).to_yaml())
    common = ["--threads", "1", "--warmup", "1", "--min-repeats", "10", "--max-repeats", "12", "--tolerance", "0.5",
              "--max-seconds", "5", "--no-cache", "--json"]
    done = run_nas("latency", "measure", str(spec_file), "--address", address, *common)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["estimate_ms"] > 0 and result["stamp"]["resolution"] == 16
    dead = f"127.0.0.1:{_free_port()}"
    refused = run_nas("latency", "measure", str(spec_file), "--address", dead, *common)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-2000:]
    assert f"address '{dead}': no Ray cluster answers there" in lines[0]


def test_a_dead_address_is_a_named_error_in_the_library() -> None:
    with pytest.raises(RayClusterError, match="no Ray cluster answers there"):
        RayLatencyBackend("CPU", address=f"127.0.0.1:{_free_port()}", **FAST)
