"""Kill and resume for every controller, through the CLI: SIGKILL at two points of one campaign,
then a resume, must finish the same sequence of architectures as an uninterrupted campaign with
one worker, evaluate no architecture twice and lose no finished trial. (``rl`` has its own, longer
test in test_campaign.py, with --rerun-failed.) With two workers the order is free, but no finished
trial may be lost or rewritten and no architecture evaluated twice.

Latency and accuracy of an architecture proposed again must be the same for the sequences to
match: training is seeded, and the latency cache (private to the test, shared by its campaigns)
returns the first measurement of an architecture, so a proposal is told the same values in both.
"""
from __future__ import annotations

import pytest

from tests.campaign.test_campaign import _run_until
from tests.support.campaign import complete, stored_trials, write_config
from tests.support.cli import run_nas


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["evolution", "tpe", "nsga2", "random"])
def test_two_kills_and_a_resume_keep_the_sequence(isolated, controller: str) -> None:
    runs = isolated / "runs"
    section = {"name": controller, "options": {}}
    straight = write_config(isolated, "straight", controller=section, budget={"trials": 3})
    result = run_nas("search", "-c", str(straight), "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [t.user_attrs["arch_id"] for t in complete(stored_trials(runs / "straight", "straight"))]
    assert len(expected) == 3

    killed = write_config(isolated, "killed", controller=section, budget={"trials": 3})
    _run_until(killed, runs, "killed", finished=1)  # first kill: one finished, the second running
    _run_until(killed, runs, "killed", finished=2)  # second kill, after a resume
    trials = stored_trials(runs / "killed", "killed")
    assert len(complete(trials)) >= 2

    resumed = run_nas("search", "-c", str(killed), "--runs-dir", str(runs))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = complete(stored_trials(runs / "killed", "killed"))
    assert [t.user_attrs["arch_id"] for t in done] == expected  # the same sequence as uninterrupted
    evaluated = [t.user_attrs["arch_id"] for t in done if "reused_from" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated))  # no architecture evaluated twice


@pytest.mark.slow
def test_a_kill_with_two_workers_loses_no_finished_trial_and_evaluates_nothing_twice(isolated) -> None:
    """Two workers: SIGKILL with trials in flight, then resume. The trials finished before the kill
    come back unchanged, the ones in flight fail as interrupted, the budget is reached, and no
    architecture is evaluated twice (the order may differ from a one-worker run's)."""
    runs = isolated / "runs"
    config = write_config(isolated, "pair", budget={"trials": 4}, workers=2)
    _run_until(config, runs, "pair", finished=1)
    before = {t.number: (t.user_attrs["arch_id"], t.values) for t in complete(stored_trials(runs / "pair", "pair"))}
    assert before

    resumed = run_nas("search", "-c", str(config), "--runs-dir", str(runs))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = stored_trials(runs / "pair", "pair")
    done = complete(trials)
    assert len(done) == 4
    after = {t.number: (t.user_attrs["arch_id"], t.values) for t in done}
    assert {number: after.get(number) for number in before} == before  # nothing lost, nothing rewritten
    failed = [t for t in trials if t.state.name == "FAIL"]
    # The ones in flight, whether the restored controller or the stale-trial sweep failed them.
    assert failed and all("interrupted" in t.user_attrs["error"] for t in failed)
    evaluated = [t.user_attrs["arch_id"] for t in done if "reused_from" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated))
