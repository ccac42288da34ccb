"""Joining Ray: fast failure on a dead address, and what workers inherit from the driver."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nas.runtime.cluster import RayClusterError, check_reachable, worker_environment

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


def test_a_dead_address_fails_at_once_naming_it() -> None:
    port = _closed_port()
    with pytest.raises(RayClusterError, match=rf"address '127\.0\.0\.1:{port}': no Ray cluster answers there"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=5.0)


def test_a_listening_address_and_non_tcp_addresses_pass() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")
    check_reachable("auto")
    check_reachable("ray://head:10001")


def test_workers_get_the_project_and_the_lock_settings(monkeypatch) -> None:
    monkeypatch.setenv("NAS_LOCK_DIR", "/tmp/locks-for-test")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    env = worker_environment()["env_vars"]
    assert env["PYTHONPATH"].split(":")[:2] == [str(ROOT), "/somewhere/else"]
    assert env["NAS_LOCK_DIR"] == "/tmp/locks-for-test"
    assert env["GLOG_v"]
