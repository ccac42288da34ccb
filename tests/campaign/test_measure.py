"""A campaign's latency: an imprecise measurement is measured again and pooled, never silently kept."""
from __future__ import annotations

import pytest

from latency.config import LatencyConfig, make_backend
from nas.campaign.evaluate import IMPRECISE_RETRIES, measure_latency
from tests.support.latency import private_latency_dirs, tiny_spec  # noqa: F401 - a fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_latency_dirs")]  # measures for real


def test_an_imprecise_latency_is_measured_again_and_pooled() -> None:
    # A tolerance no host meets: every measurement ends at its cap, imprecise.
    config = LatencyConfig(cache=False, threads=1, warmup=1, tolerance=1e-6, max_seconds=2.0)
    spec = tiny_spec()
    single = make_backend(config, resolution=16).measure(spec)
    assert not single.precise and single.blocks >= 2
    record = measure_latency(spec, config, 16)
    assert record.latency_precise is False  # still imprecise, and stored as such
    # 1 + IMPRECISE_RETRIES measurements pooled: about that many times the blocks of one.
    assert record.latency_blocks >= 0.7 * (1 + IMPRECISE_RETRIES) * single.blocks
    assert record.latency_ci_low_ms <= record.latency_ms <= record.latency_ci_high_ms


def test_a_precise_latency_is_measured_once() -> None:
    config = LatencyConfig(cache=False, threads=1, warmup=1, tolerance=0.5, max_seconds=2.0)
    spec = tiny_spec()
    record = measure_latency(spec, config, 16)
    assert record.latency_precise is True
    single = make_backend(config, resolution=16).measure(spec)
    assert record.latency_blocks < 2 * single.blocks  # one measurement's blocks, not two pooled
