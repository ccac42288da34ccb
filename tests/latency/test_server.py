"""The device server: one per host and settings, reused, restarted after a crash or a hang, and
inspected or stopped from the CLI."""
from __future__ import annotations

import os
import signal
import time

import pytest

from latency import MeasurementTimeout
from latency.mindspore_backend import MindSporeBackend
from latency.server import running_servers
from nas.runtime.pool import JobPool
from tests.support.cli import run_nas
from tests.support.latency import FAST, private_latency_dirs, tiny_spec  # noqa: F401 - a fixture

# Every case starts device servers and measures, in directories of its own.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_latency_dirs")]


def test_one_server_serves_every_backend_of_the_same_settings() -> None:
    first = MindSporeBackend(resolution=16, **FAST)
    second = MindSporeBackend(resolution=24, **FAST)  # another resolution: the same server
    results = [first.measure(tiny_spec()), second.measure(tiny_spec(mid=24)), first.measure(tiny_spec(mid=32))]
    assert all(result.estimate_ms > 0 for result in results)
    assert first.launches + second.launches == 1
    servers = [info for info in running_servers() if info.alive]
    assert len(servers) == 1 and servers[0].settings["threads"] == first.threads
    status = first.server.status()
    assert status is not None and status["served"] == 3 and status["cells"] <= status["settings"]["keep_cells"]
    other = MindSporeBackend(resolution=16, threads=1 if first.threads > 1 else 2, **FAST)
    other.measure(tiny_spec())  # other threads: a server of its own
    assert other.launches == 1 and len([info for info in running_servers() if info.alive]) == 2


def test_compiled_networks_are_evicted_so_memory_stays_bounded() -> None:
    backend = MindSporeBackend(resolution=16, **FAST)
    for mid in range(8, 8 + 4 * 8, 4):  # eight different networks
        backend.measure(tiny_spec(mid=mid))
    status = backend.server.status()
    assert status is not None and status["served"] == 8 and status["cells"] == 4


def test_a_hung_server_is_killed_and_the_next_measurement_starts_a_fresh_one() -> None:
    backend = MindSporeBackend(resolution=16, **FAST)
    backend.measure(tiny_spec())
    pid = backend.server.status()["pid"]
    os.kill(pid, signal.SIGSTOP)  # hangs: no progress at all
    hung = MindSporeBackend(resolution=16, **{**FAST, "timeout_s": 2.0})
    with pytest.raises(MeasurementTimeout, match="2 s"):
        hung.measure(tiny_spec(mid=24))
    assert backend.measure(tiny_spec(mid=24)).estimate_ms > 0
    assert backend.server.status()["pid"] != pid and backend.launches == 2


def test_a_warm_server_silent_past_a_short_timeout_is_caught() -> None:
    """A network already compiled in the server answers in one burst after a silence shorter than
    any polling interval: eleven calls of about 6 ms here (1.5 ms on a machine four times faster).
    That silence is past a 10 ms timeout and must be caught, not waited out."""
    spec = tiny_spec(mid=128, out=64)
    warm = MindSporeBackend(resolution=32, **FAST)
    warm.measure(spec)  # compiled and cached in the server: the next request only times it
    brisk = MindSporeBackend(resolution=32, **{**FAST, "timeout_s": 0.01})
    with pytest.raises(MeasurementTimeout, match="0.01 s"):
        brisk.measure(spec)


def measure_in_a_worker() -> tuple[int, int]:
    """Measure a tiny network (module level: a Ray worker imports it); this process's id and the
    server's."""
    backend = MindSporeBackend(resolution=16, **FAST)
    backend.measure(tiny_spec())
    status = backend.server.status()
    assert status is not None
    return os.getpid(), int(status["pid"])


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded by ``seconds``
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_server_outlives_the_recycled_ray_worker_that_started_it() -> None:
    """Ray kills a worker's child processes when the worker exits, as a campaign's workers do after
    every few jobs. The host's server, shared by every worker, must not be one of them: another
    worker's measurement would die mid-request."""
    pool: JobPool[int] = JobPool(measure_in_a_worker, workers=1, recycle_after=1, timeout_s=300.0, what="measurement")
    try:
        [first] = list(pool.map_unordered([(1, ())]))
        assert first.ok, first.error
        worker, server = first.value
        assert _gone(worker, 60.0)  # recycled after its one job
        time.sleep(1.0)
        assert [info.pid for info in running_servers() if info.alive] == [server]
        [second] = list(pool.map_unordered([(2, ())]))
        assert second.ok, second.error
        assert second.value[0] != worker and second.value[1] == server  # a new worker, the same server
    finally:
        pool.close()


def test_the_cli_shows_and_stops_the_servers(tmp_path) -> None:
    MindSporeBackend(resolution=16, **FAST).measure(tiny_spec())
    shown = run_nas("latency", "server", "status")
    assert shown.returncode == 0 and "running" in shown.stdout and "mindspore" in shown.stdout
    stopped = run_nas("latency", "server", "stop")
    assert stopped.returncode == 0 and "stopped 1 device server(s)" in stopped.stdout
    assert not any(info.alive for info in running_servers())


@pytest.mark.parametrize("argv,message", [
    (["--runtime", "tflite"], "--runtime: invalid choice: 'tflite'"),
    (["--device", "TPU"], "unknown device 'TPU'"),
    (["--runtime", "onnxruntime", "--device", "GPU"], "latency.runtime: 'onnxruntime' measures CPU targets"),
    (["--protocol", "fancy"], "--protocol: invalid choice: 'fancy'"),
])
def test_bad_latency_settings_are_one_line_with_exit_2(argv: list[str], message: str) -> None:
    done = run_nas("latency", "measure", "mobilenet_v3_small", *argv)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr
