"""The same campaign against a real PostgreSQL server (installed from Debian's packages)."""
from __future__ import annotations

import pytest
import yaml

from tests.support.campaign import tiny_config
from tests.support.cli import run_nas
from tests.support.postgres import PostgresServer, server_binaries


@pytest.fixture
def postgres_url(tmp_path):
    if server_binaries() is None:
        pytest.skip("PostgreSQL server is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2")
    import shutil
    import tempfile
    from pathlib import Path

    # Not under pytest's tmp_path: the 'postgres' user must be able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    folder.chmod(0o755)
    server = PostgresServer(folder / "server")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_campaign_on_postgresql(postgres_url, tmp_path, monkeypatch) -> None:
    import optuna

    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    config = tmp_path / "pg.yaml"
    config.write_text(yaml.safe_dump(tiny_config("pg", storage=postgres_url, budget={"trials": 2})))
    result = run_nas("search", "-c", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 2 and all(t.user_attrs["latency_ms"] > 0 for t in done)
    assert not (tmp_path / "runs" / "pg" / "study.db").exists()  # nothing went to SQLite
    shown = run_nas("results", str(tmp_path / "runs" / "pg"))
    assert shown.returncode == 0 and "2 finished" in shown.stdout
