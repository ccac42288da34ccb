"""Search campaigns end to end through the CLI: real training, measured latency, local Ray, SQLite."""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nas.campaign.config import config_from_dict, load_config
from nas.campaign.driver import Campaign, Progress
from nas.campaign.export import read_provenance
from nas.campaign.rundir import RunDir
from nas.campaign.study import HEARTBEAT_STALE_S, CampaignError
from nas.spec import ArchSpec
from nas.spec.profile import profile
from tests.support.campaign import complete, stored_trials, tiny_config, write_config
from tests.support.cli import run_nas, run_nas_each

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted(ROOT.glob("experiments/*.yaml")), ids=lambda p: p.stem)
def test_every_campaign_config_parses(path: Path) -> None:
    config = load_config(path)
    assert config.budget.trials >= 1 and config.reward.target_ms > 0


def test_the_paper_settings_are_in_the_configs() -> None:
    mnasnet = load_config(ROOT / "experiments/mnasnet_imagenet.yaml")
    assert (mnasnet.reward.target_ms, mnasnet.reward.w, mnasnet.controller.name) == (75.0, -0.07, "rl")
    assert mnasnet.evaluator.train.epochs == 5 and abs(mnasnet.evaluator.held_out * 1281167 - 50000) < 500
    assert load_config(ROOT / "experiments/mobilenet_v3_small_imagenet.yaml").reward.w == -0.15
    demo = load_config(ROOT / "experiments/demo.yaml")
    assert (demo.budget.trials, demo.workers, demo.controller.name, demo.latency.source) == (12, 2, "rl", "measure")


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bad_input_exits_2_and_touches_no_run_data(isolated) -> None:
    runs = isolated / "runs" / "existing"
    runs.mkdir(parents=True)
    (runs / "config.yaml").write_text(config_from_dict(tiny_config("existing")).to_yaml())
    with sqlite3.connect(runs / "study.db") as db:
        db.execute("create table marker (x int)")
    before = _fingerprint(isolated / "runs")
    cases = {
        "malformed.yaml": ("name: existing\nspace: {name: mnasnet\n", "malformed YAML"),
        "unknown.yaml": (yaml.safe_dump({**tiny_config("existing"), "wokers": 2}), "wokers: unknown key"),
        "nested.yaml": (yaml.safe_dump(tiny_config("existing", evaluator={"train": {"epoch": 1}})),
                        "evaluator.train.epoch"),
        "dataset.yaml": (yaml.safe_dump(tiny_config("existing", evaluator={"dataset": str(isolated / "nope")})),
                         "not found"),
        "storage.yaml": (yaml.safe_dump(tiny_config("existing", storage="postgresql://nobody@127.0.0.1:9/none")),
                         "is unreachable"),
        "changed.yaml": (yaml.safe_dump(tiny_config("existing", seed=7)),
                         "started with seed=0, this config has seed=7"),
        "nested_change.yaml": (yaml.safe_dump(tiny_config("existing", evaluator={"train": {"epochs": 3}})),
                               "evaluator.train.epochs=1, this config has evaluator.train.epochs=3"),
        "reward.yaml": (yaml.safe_dump(tiny_config("existing", reward={"kind": "soft", "alpha": 0.5})), "reward"),
        "space.yaml": (yaml.safe_dump(tiny_config("existing", space={"name": "resnet"})), "unknown space 'resnet'"),
        "controller.yaml": (yaml.safe_dump(tiny_config("existing", controller={"name": "ppo"})),
                            "unknown controller 'ppo'"),
        "latency_address.yaml": (yaml.safe_dump(tiny_config("existing", latency={"address": "127.0.0.1:9"})),
                                 "latency.address: must be the campaign's own Ray cluster"),
        "runtime.yaml": (yaml.safe_dump(tiny_config("existing", latency={"runtime": "tflite"})), "latency.runtime"),
        "device.yaml": (yaml.safe_dump(tiny_config("existing", latency={"device": "TPU"})), "unknown device 'TPU'"),
    }
    for file_name, (text, _) in cases.items():
        (isolated / file_name).write_text(text)
    results = run_nas_each([("search", "-c", str(isolated / file_name), "--runs-dir", str(isolated / "runs"))
                            for file_name in cases], cwd=isolated)
    for (file_name, (_, message)), result in zip(cases.items(), results, strict=True):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (file_name, result.stderr[-1500:])
        assert len(lines) == 1 and message in lines[0], (file_name, lines)
    assert _fingerprint(isolated / "runs") == before


def test_a_planted_pickle_is_refused_without_being_loaded(isolated) -> None:
    """An earlier version's controller.pkl (or one planted in a shared run directory) is never
    unpickled: the campaign names it and stops, and nothing runs or changes."""
    run_dir = isolated / "runs" / "planted"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config_from_dict(tiny_config("planted")).to_yaml())
    marker = isolated / "payload_ran"
    (run_dir / "controller.pkl").write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    config = isolated / "planted.yaml"
    config.write_text(yaml.safe_dump(tiny_config("planted")))
    before = _fingerprint(isolated / "runs")
    result = run_nas("search", "-c", str(config), "--runs-dir", str(isolated / "runs"), cwd=isolated)
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "controller.pkl" in lines[0] and "never loaded" in lines[0], lines
    assert not marker.exists()
    assert _fingerprint(isolated / "runs") == before


def test_resume_accepts_operational_changes_and_names_a_search_change(tmp_path) -> None:
    run_dir = tmp_path / "runs" / "resumed"
    run_dir.mkdir(parents=True)
    stored = tiny_config("resumed", latency={"cache": True, "timeout_s": 50.0})
    (run_dir / "config.yaml").write_text(config_from_dict(stored).to_yaml())
    operational = tiny_config("resumed", budget={"trials": 9}, workers=2,
                              latency={"timeout_s": 90.0}, evaluator={"timeout_s": 99.0})
    RunDir(config_from_dict(operational), tmp_path / "runs").check_identity()
    changed = tiny_config("resumed", latency={"warmup": 3})
    with pytest.raises(CampaignError, match=r"started with latency\.warmup=2, this config has latency\.warmup=3"):
        RunDir(config_from_dict(changed), tmp_path / "runs").check_identity()


@pytest.mark.slow
def test_four_trial_campaign_exports_and_plots(isolated) -> None:
    config = write_config(isolated, "four", workers=2, baselines={"widths": [0.25, 0.5]})
    result = run_nas("search", "-c", str(config), "--runs-dir", str(isolated / "runs"), cwd=isolated)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "baseline x0.25: accuracy" in result.stderr and "against the baseline curve (2 widths" in result.stdout
    run_dir = isolated / "runs" / "four"
    trials = stored_trials(run_dir, "four")
    done = complete(trials)
    assert len(done) == 4 and not any(t.user_attrs.get("baseline") for t in trials)  # the search's own study
    baselines = stored_trials(run_dir, "four:baselines")
    assert sorted(t.user_attrs["width"] for t in complete(baselines)) == [0.25, 0.5]
    for trial in baselines:  # the space's reference at each width, evaluated like a trial
        assert trial.user_attrs["baseline"] is True and trial.user_attrs["latency_source"] == "measured"
        assert ArchSpec.from_yaml(trial.user_attrs["spec_yaml"]).arch_id == trial.user_attrs["arch_id"]
        assert trial.value == pytest.approx(trial.user_attrs["accuracy"] * (trial.user_attrs["latency_ms"] / 5.0)
                                            ** -0.07)
    for trial in done:
        attrs = trial.user_attrs
        assert 0.0 <= attrs["accuracy"] <= 1.0 and attrs["latency_ms"] > 0 and attrs["latency_p90_ms"] >= attrs[
            "latency_p10_ms"]
        assert attrs["latency_stamp"]["device"] == "CPU" and attrs["latency_source"] == "measured"
        assert attrs["reward"] == pytest.approx(attrs["accuracy"] * (attrs["latency_ms"] / 5.0) ** -0.07)

    shown = run_nas("results", str(run_dir))
    assert shown.returncode == 0 and (run_dir / "trials.parquet").is_file() and "Pareto front" in shown.stdout
    assert "baselines (the mnasnet space's reference" in shown.stdout and (run_dir / "baselines.csv").is_file()
    # Resuming evaluates no baseline twice.
    again = run_nas("search", "-c", str(config), "--runs-dir", str(isolated / "runs"), cwd=isolated)
    assert again.returncode == 0 and "already has 4 finished trials" in again.stderr
    assert len(stored_trials(run_dir, "four:baselines")) == 2

    exported = run_nas("export", str(run_dir), "--pareto", "--best", "-o", str(isolated / "exports"))
    assert exported.returncode == 0, exported.stderr
    files = sorted((isolated / "exports").glob("*.yaml"))
    assert files
    by_number = {t.number: t for t in done}
    for path in files:
        info = read_provenance(path)
        trial = by_number[info["trial"]]
        spec = ArchSpec.from_yaml(path)
        assert spec.arch_id == trial.user_attrs["arch_id"] == info["arch_id"]
        counts = profile(spec)
        assert (counts.params, counts.madds) == (trial.user_attrs["params"], trial.user_attrs["madds"])
        assert info["campaign"] == "four" and info["latency_stamp"]["resolution"] == 16

    plotted = run_nas("plot", str(run_dir))
    assert plotted.returncode == 0, plotted.stderr[-2000:]
    for name in ("pareto.png", "pareto.html", "reward.png"):
        assert (run_dir / name).stat().st_size > 1000
    page = (run_dir / "pareto.html").read_text()
    assert "baselines (reference by width)" in page and "x0.25" in page
    assert "latency (ms, measured: CPU, ONNX Runtime, 1 thread, 16 px, batch 1)" in page  # what the axis shows
    assert "mobilenet_v3_large" not in page  # references only with --with-references, placed by accuracy

    storage = f"sqlite:///{run_dir / 'study.db'}"  # `optuna-dashboard <storage>` serves the campaign
    studies = dashboard_get(storage, "/api/studies")["study_summaries"]
    assert sorted(s["study_name"] for s in studies) == ["four", "four:baselines"]
    search = next(s for s in studies if s["study_name"] == "four")
    detail = dashboard_get(storage, f"/api/studies/{search['study_id']}")
    assert sum(t["state"] == "Complete" for t in detail["trials"]) == 4


def dashboard_get(storage: str, path: str) -> object:
    """GET ``path`` from optuna-dashboard's WSGI app over ``storage``; the decoded JSON."""
    import io
    import json
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, REQUEST_METHOD="GET", **{"wsgi.input": io.BytesIO()})
    status: list = []
    body = b"".join(wsgi(storage)(environ, lambda code, headers, *exc: status.append(code)))
    assert status[0].startswith("200"), status
    return json.loads(body)


def test_optuna_dashboard_reads_a_study(isolated) -> None:
    import optuna

    storage = f"sqlite:///{isolated / 'study.db'}"
    study = optuna.create_study(study_name="dash", storage=storage, direction="maximize")
    trial = study.ask({"b0_op": optuna.distributions.CategoricalDistribution(["mbconv", "dwsep"])})
    study.tell(trial, 0.5)
    assert [s["study_name"] for s in dashboard_get(storage, "/api/studies")["study_summaries"]] == ["dash"]


def _peek_states(db: Path) -> tuple[int, int]:
    """(finished trials, running trials with a proposal) of a campaign's study.db, read-only: the
    test must not open it through Optuna, which would create tables alongside the campaign."""
    if not db.is_file():
        return 0, 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as connection:
            done = connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
            running = connection.execute(
                "SELECT COUNT(*) FROM trials JOIN trial_user_attributes USING (trial_id) "
                "WHERE trials.state = 'RUNNING' AND trial_user_attributes.key = 'spec_yaml'").fetchone()[0]
    except sqlite3.Error:  # the campaign is still creating its tables
        return 0, 0
    return int(done), int(running)


def _run_until(config: Path, runs: Path, name: str, finished: int, timeout: float = 600) -> None:
    """Start a campaign, wait until ``finished`` trials are done and the next is running, SIGKILL it."""
    env = dict(os.environ, GLOG_v="3")
    log = config.with_suffix(f".{finished}.stderr")
    with log.open("wb") as sink:
        command = [sys.executable, "-m", "nas.cli", "search", "-c", str(config), "--runs-dir", str(runs)]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done, running = _peek_states(runs / name / "study.db")
            if done >= finished and running:
                    time.sleep(3)  # well inside the next evaluation
                    return
            assert process.poll() is None, f"the campaign ended before it could be killed:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        raise AssertionError("the campaign did not reach the kill point in time")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone if the campaign ended
            os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        process.wait()


@pytest.mark.slow
def test_kill_and_resume_keeps_the_sequence(isolated) -> None:
    runs = isolated / "runs"
    reference = write_config(isolated, "straight", budget={"trials": 3})
    assert run_nas("search", "-c", str(reference), "--runs-dir", str(runs)).returncode == 0
    expected = [t.user_attrs["arch_id"] for t in complete(stored_trials(runs / "straight", "straight"))]
    assert len(expected) == 3

    killed = write_config(isolated, "killed", budget={"trials": 3})
    _run_until(killed, runs, "killed", finished=1)  # mid PPO batch (M = 2)
    trials = stored_trials(runs / "killed", "killed")
    assert len(complete(trials)) == 1 and any(t.state.name == "RUNNING" for t in trials)

    resumed = run_nas("search", "-c", str(killed), "--runs-dir", str(runs))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = stored_trials(runs / "killed", "killed")
    done = complete(trials)
    assert len(done) == 3
    evaluated = [t.user_attrs["arch_id"] for t in done if "reused_from" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated))  # no architecture evaluated twice
    assert [t.user_attrs["arch_id"] for t in done] == expected  # the same sequence as uninterrupted
    interrupted = [t for t in trials if t.state.name == "FAIL"]
    assert len(interrupted) == 1 and "interrupted" in interrupted[0].user_attrs["error"]

    again = run_nas("search", "-c", str(killed), "--runs-dir", str(runs))
    assert again.returncode == 0 and "already has 3 finished trials" in again.stderr

    # Another run's controller state (here the uninterrupted run's) is refused: the study records
    # the digests of the states its own driver saved. Nothing is changed by the refusal.
    own = (runs / "killed" / "controller.json").read_bytes()
    (runs / "killed" / "controller.json").write_bytes((runs / "straight" / "controller.json").read_bytes())
    before = _fingerprint(runs / "killed")
    foreign = run_nas("search", "-c", str(killed), "--runs-dir", str(runs), "--trials", "4")
    assert foreign.returncode == 2 and "not the one this campaign's study recorded" in foreign.stderr
    assert _fingerprint(runs / "killed") == before
    (runs / "killed" / "controller.json").write_bytes(own)

    # --rerun-failed retries the interrupted trial's architecture; it was evaluated meanwhile (it was
    # proposed again), so the stored result is reused instead of evaluating it a second time.
    rerun = run_nas("search", "-c", str(killed), "--runs-dir", str(runs), "--rerun-failed")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    done = complete(stored_trials(runs / "killed", "killed"))
    assert len(done) == 4
    assert done[-1].user_attrs["arch_id"] == interrupted[0].user_attrs["arch_id"]
    source = {t.number: t for t in done}[done[-1].user_attrs["reused_from"]]
    assert source.user_attrs["latency_ms"] == done[-1].user_attrs["latency_ms"]
    assert len([t for t in done if "reused_from" not in t.user_attrs]) == 3
    assert done[-1].user_attrs["rerun_of"] == interrupted[0].number
    once = run_nas("search", "-c", str(killed), "--runs-dir", str(runs), "--rerun-failed")
    assert once.returncode == 0 and len(complete(stored_trials(runs / "killed", "killed"))) == 4  # retried once


def _start(config: Path, runs: Path) -> subprocess.Popen:
    env = dict(os.environ, GLOG_v="3")
    return subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "-c", str(config), "--runs-dir", str(runs)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _ray_task_pids() -> list[int]:
    """Ray workers currently running an evaluation (their process title names the task)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::evaluate_candidate"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_for(predicate, seconds: float, process: subprocess.Popen) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert process.poll() is None, process.stderr.read()[-2000:] if process.stderr else "ended early"
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
def test_a_dead_worker_fails_its_trial_and_the_campaign_goes_on(isolated) -> None:
    runs = isolated / "runs"
    config = write_config(isolated, "crash", retries=0, budget={"trials": 2})
    process = _start(config, runs)
    try:
        victim = _wait_for(_ray_task_pids, 300, process)[0]
        time.sleep(2)
        os.kill(victim, signal.SIGKILL)
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr[-2000:]
    trials = stored_trials(runs / "crash", "crash")
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(complete(trials)) == 2 and len(failed) == 1
    assert "died" in failed[0].user_attrs["error"].lower() or "crash" in failed[0].user_attrs["error"].lower()
    assert "failed" in stderr


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_records_the_interruption(isolated) -> None:
    runs = isolated / "runs"
    config = write_config(isolated, "stopped")
    process = _start(config, runs)
    try:
        _wait_for(_ray_task_pids, 300, process)
        time.sleep(2)
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-2000:]
    assert "Resume: nas search -c" in stdout
    trials = stored_trials(runs / "stopped", "stopped")
    assert [t.state.name for t in trials] == ["FAIL"]
    assert "interrupted" in trials[0].user_attrs["error"]
    assert (runs / "stopped" / "controller.json").is_file() and (runs / "stopped" / "trials.csv").is_file()
    time.sleep(1)
    assert not _ray_task_pids()  # the running evaluation was stopped with the campaign


@pytest.mark.slow
def test_address_joins_an_existing_ray_cluster(isolated, monkeypatch) -> None:
    """`ray start` on a machine holding a Ray token enables token auth; the campaign must send it."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = isolated / "ray_token"
    token_file.write_text("0123456789abcdef0123456789abcdef")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    ray = str(Path(sys.executable).parent / "ray")
    env = dict(os.environ, GLOG_v="3", RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    "--disable-usage-stats", '--resources={"latency_device:CPU": 1}'],
                   check=True, env=env, capture_output=True, timeout=180)
    try:  # latency comes from the cluster's device actor (this host offers latency_device:CPU)
        config = write_config(isolated, "joined", budget={"trials": 1}, latency={"address": f"127.0.0.1:{port}"},
                              address=f"127.0.0.1:{port}")
        result = run_nas("search", "-c", str(config), "--runs-dir", str(isolated / "runs"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(complete(stored_trials(isolated / "runs" / "joined", "joined"))) == 1
        status = subprocess.run([ray, "status", f"--address=127.0.0.1:{port}"], env=dict(env, RAY_AUTH_MODE="token"),
                                capture_output=True,
                                text=True, timeout=120)
        assert status.returncode == 0  # the campaign joined the cluster and left it running
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=180)
    config = write_config(isolated, "joined", budget={"trials": 2}, latency={"address": f"127.0.0.1:{port}"},
                          address=f"127.0.0.1:{port}")
    result = run_nas("search", "-c", str(config), "--runs-dir", str(isolated / "runs"))
    assert result.returncode == 2
    assert f"address '127.0.0.1:{port}': no Ray cluster answers there" in result.stderr.strip().splitlines()[-1]
    assert len(complete(stored_trials(isolated / "runs" / "joined", "joined"))) == 1


def test_drivers_sharing_a_study_leave_each_others_live_trials_alone(isolated) -> None:
    """A second driver (its own run directory, the same storage) fails only dead drivers' trials."""
    import dataclasses

    storage = f"sqlite:///{isolated / 'shared.db'}"
    config = config_from_dict(tiny_config("shared", storage=storage, controller={"name": "random", "options": {}}))
    first = Campaign(config, isolated / "runs_a", log=lambda line: None)
    job = first._next_job(Progress(budget=1))
    live = job.trial

    second = Campaign(config, isolated / "runs_b", log=lambda line: None)
    assert {t.number: t.state.name for t in second.study.trials()}[live] == "RUNNING"
    with pytest.raises(CampaignError, match="already running from"):
        Campaign(config, isolated / "runs_b", log=lambda line: None)  # one driver per run directory

    # The first driver stops beating: a driver starting later fails its trial.
    storage_api = first.study.study._storage
    storage_api.set_study_system_attr(first.study.study._study_id, f"heartbeat:{first.driver_id}",
                                      time.time() - HEARTBEAT_STALE_S - 1)
    third = Campaign(dataclasses.replace(config), isolated / "runs_c", log=lambda line: None)
    trial = {t.number: t for t in third.study.trials()}[live]
    assert trial.state.name == "FAIL" and "interrupted" in trial.user_attrs["error"]


@pytest.mark.slow
def test_twins_of_an_in_flight_architecture_wait_at_most_workers_deep(isolated) -> None:
    """A converged policy keeps proposing the architecture being evaluated: its twins wait for that
    evaluation, at most ``workers`` of them, instead of asking the rest of the budget ahead."""
    config = config_from_dict(tiny_config("twins", workers=2, budget={"trials": 12},
                                          controller={"name": "random", "options": {}}))
    campaign = Campaign(config, isolated / "runs", log=lambda line: None)
    decisions = campaign.space.center()
    ask_fixed = campaign.controller.ask_fixed
    running: list[int] = []

    def same_again():  # the real study's ask, of one architecture enqueued every time
        running.append(sum(t.state.name == "RUNNING" for t in campaign.study.trials()))
        return ask_fixed(decisions)

    campaign.controller.ask = same_again
    try:
        summary = campaign.run()
    finally:
        campaign.close()
    assert summary.finished == 12 and len(running) == 12
    assert max(running) <= 1 + config.workers  # the one evaluated, and up to `workers` twins
    done = complete(stored_trials(isolated / "runs" / "twins", "twins"))
    assert len(done) == 12 and sum("reused_from" not in t.user_attrs for t in done) == 1  # evaluated once
