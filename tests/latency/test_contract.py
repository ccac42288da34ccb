"""The contract every latency backend keeps: the MindSpore backend, the cached backend and the
Ray remote backend all run this one suite, with real measurements."""
from __future__ import annotations

import pytest

from latency import DeviceUnavailableError, LatencyBackend, LatencyResult, MeasurementTimeout, PieceBackend
from latency.cache import CachedBackend, LatencyCache
from latency.lut import LatencyLUT, build_lut
from latency.mindspore_backend import MindSporeBackend, OnnxRuntimeBackend
from latency.pieces import unique_pieces
from latency.remote import RayLatencyBackend
from tests.support.latency import FAST, PAIRED, big_spec, stop_servers, tiny_spec

pytestmark = pytest.mark.slow  # every case measures a network or starts Ray

BACKENDS = ["mindspore", "paired", "onnxruntime", "cached", "ray"]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray with one device host: this machine, offering ``latency_device:CPU``."""
    ray = pytest.importorskip("ray")
    locks = tmp_path_factory.mktemp("ray-locks")
    ray.init(num_cpus=2, resources={"latency_device:CPU": 1}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"NAS_LOCK_DIR": str(locks), "GLOG_v": "3"}})
    yield locks
    ray.shutdown()


@pytest.fixture(params=BACKENDS)
def make_backend(request, tmp_path, monkeypatch):
    """A factory: ``make_backend(**options)`` builds this parameter's backend with ``options``."""
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    created = []
    ray_locks: list = []  # the Ray device host's lock directory, once this case has used it

    def make(**options):
        settings = {**(PAIRED if request.param in ("paired", "onnxruntime") else FAST), "resolution": 32, **options}
        if request.param in ("mindspore", "paired"):
            backend = MindSporeBackend("CPU", **settings)
        elif request.param == "onnxruntime":
            backend = OnnxRuntimeBackend("CPU", **settings)
        elif request.param == "cached":
            backend = CachedBackend(MindSporeBackend("CPU", **settings), LatencyCache(tmp_path / "cache.db"))
        else:
            ray_locks.append(request.getfixturevalue("ray_cluster"))
            backend = RayLatencyBackend("CPU", start_timeout_s=60, **settings)
        created.append(backend)
        return backend

    yield make
    for backend in created:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    stop_servers()
    if ray_locks:  # the device host's server outlives its actor: stop it, so every case starts cold
        monkeypatch.setenv("NAS_LOCK_DIR", str(ray_locks[0]))
        stop_servers()


def test_a_measurement_is_a_stamped_median_with_its_spread(make_backend) -> None:
    backend = make_backend()
    assert isinstance(backend, LatencyBackend)
    spec = tiny_spec()
    result = backend.measure(spec)
    assert isinstance(result, LatencyResult)
    assert 0 < result.p10_ms <= result.median_ms <= result.p90_ms
    if result.stamp.protocol == "plain":
        assert FAST["min_repeats"] <= result.repeats <= FAST["max_repeats"]
        assert result.estimate_ms == result.median_ms
    else:  # paired: blocks of two candidate calls, each against the anchor, at the anchor's scale
        assert result.blocks >= PAIRED["min_blocks"] and result.repeats == 2 * result.blocks
        assert result.anchor_ms > 0 and len(result.samples) == result.blocks
    assert result.ci_low_ms <= result.estimate_ms <= result.ci_high_ms
    assert isinstance(result.precise, bool)
    assert result.cv >= 0 and result.iqr_ms >= 0
    assert result.stamp == backend.stamp(spec)
    assert result.stamp.resolution == 32 and result.stamp.batch == 1 and result.stamp.mode == "GRAPH"
    assert LatencyResult.from_dict(result.to_dict()) == result


def test_a_much_bigger_network_measures_slower(make_backend) -> None:
    backend = make_backend()
    tiny, big = backend.measure_many([tiny_spec(), big_spec()])
    assert big.estimate_ms > 2 * tiny.estimate_ms


def test_stamps_separate_settings_that_change_latency(make_backend) -> None:
    spec = tiny_spec()
    small = make_backend(resolution=32)
    first = small.stamp(spec)
    assert small.stamp(spec) == first
    if hasattr(small, "close"):
        small.close()  # a device host offers one measuring actor at a time
    large = make_backend(resolution=48, batch=2).stamp(spec)
    assert large.key != first.key
    assert large.batch == 2 and large.resolution == 48


def test_a_measurement_past_its_timeout_raises_the_named_error(make_backend) -> None:
    backend = make_backend(timeout_s=0.01)
    with pytest.raises(MeasurementTimeout, match="0.01 s"):
        backend.measure(tiny_spec())


def test_the_backend_builds_a_look_up_table(make_backend, tmp_path) -> None:
    backend = make_backend(resolution=16)
    assert isinstance(backend, PieceBackend)
    lut = LatencyLUT(tmp_path / "lut", backend.stamp(resolution=16))
    report = build_lut(lut, backend, unique_pieces([tiny_spec(mid=16), tiny_spec(mid=32)], 16))
    assert report.measured == len(lut) == 5  # stem, two layers, head, launch overhead
    assert lut.predict(tiny_spec(mid=24)) > 0


def test_a_ray_cluster_without_the_device_resource_is_a_named_error(ray_cluster) -> None:
    with pytest.raises(DeviceUnavailableError, match="latency_device:nowhere"):
        RayLatencyBackend("CPU", resource="latency_device:nowhere", start_timeout_s=2, **FAST)
