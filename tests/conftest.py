"""Shared test set-up: quiet MindSpore, and fixtures used across the test packages."""
from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")
os.environ.setdefault("NAS_SERVER_IDLE_S", "60")  # device servers started by tests do not outlive them long

import pytest  # noqa: E402

from tests.support.latency import stop_servers  # noqa: E402


@pytest.fixture
def graph_mode():
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    yield


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Private locks and latency cache, so tests neither share nor wait on other runs' devices."""
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path
    stop_servers()
