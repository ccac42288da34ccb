"""Bounded memory in a campaign's worker: 30 consecutive real evaluations (training on 192 images
and measured latency, at 16 px so that it stays fast) through the campaign's job pool and its
worker recycling (RECYCLE_AFTER jobs per worker process: almost four periods). Each job's peak
resident memory stays within 1.5x of the third job's."""
from __future__ import annotations

import pytest

from latency.sampling import space_specs
from nas.campaign.config import config_from_dict
from nas.campaign.driver import RECYCLE_AFTER
from nas.campaign.evaluate import evaluate_candidate
from nas.runtime.pool import JobPool
from tests.support.campaign import tiny_config

JOBS = 30  # the count: enough to cross the recycling period several times


@pytest.mark.slow
def test_thirty_evaluations_in_one_worker_keep_its_memory_bounded(isolated) -> None:
    config = config_from_dict(tiny_config("memory", evaluator={"subset": 192}))
    specs, _ = space_specs("mnasnet", JOBS, seed=5, options={"width": 0.25, "resolution": 16, "num_classes": 10})
    pool: JobPool[int] = JobPool(evaluate_candidate, workers=1, timeout_s=600.0, recycle_after=RECYCLE_AFTER)
    try:
        jobs = [(index, (spec.to_yaml(), config.evaluator, config.latency, config.seed, None))
                for index, spec in enumerate(specs)]
        outcomes = sorted(pool.map_unordered(jobs), key=lambda outcome: outcome.key)
    finally:
        pool.close()
    assert len(outcomes) == JOBS and all(outcome.ok for outcome in outcomes), [o.error for o in outcomes if o.error]
    peaks = [outcome.peak_rss_mb for outcome in outcomes]
    assert all(peak is not None and peak > 0 for peak in peaks)
    assert max(peaks[3:]) <= 1.5 * peaks[2], [round(peak) for peak in peaks]
