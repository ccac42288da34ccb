"""One way to start or join the Ray cluster that campaigns, NetAdapt and remote latency use.

Workers get the project on ``PYTHONPATH`` and the ``GLOG_v``/``NAS_LOCK_DIR``/``NAS_CACHE_DIR``
settings of the driver, so a worker imports the same code and shares the same device locks.

Joining a cluster by address: a cluster started with ``ray start`` on a machine that holds a Ray
token (``~/.ray/auth_token``) requires that token, but Ray's driver only sends one when told to.
When ``RAY_AUTH_MODE`` is unset and a token is available we send it (a cluster without
authentication accepts it too); set ``RAY_AUTH_MODE=disabled`` to opt out.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from nas.spec.errors import NasError

FORWARDED_ENV = ("GLOG_v", "NAS_LOCK_DIR", "NAS_CACHE_DIR")


class RayClusterError(NasError):
    """Ray is missing, or the cluster at the given address cannot be reached."""


def import_ray() -> Any:
    """``ray``, or a :class:`RayClusterError` saying how to install it."""
    try:
        import ray  # heavy (about a second to import): only what runs on Ray needs it
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RayClusterError("this command runs on Ray: pip install 'ray>=2.9'") from error
    return ray


def worker_environment() -> dict[str, Any]:
    """The ``runtime_env`` that makes workers import this project with the driver's settings."""
    project = str(Path(__file__).resolve().parents[2])
    paths = [project] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env_vars = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "GLOG_v": os.environ.get("GLOG_v", "3")}
    env_vars.update({key: os.environ[key] for key in FORWARDED_ENV if key in os.environ})
    return {"env_vars": env_vars}


def send_token_if_available() -> None:
    """Turn on Ray token authentication for this driver when a token exists and the mode is unset."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:  # Ray >= 2.52; older Rays have no token authentication (heavy: Ray's internals, only when joining)
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # pragma: no cover - depends on the Ray version
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray:// client addresses and the like: leave them to Ray
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise RayClusterError(f"address {address!r}: no Ray cluster answers there ({error.strerror or error}); "
                              "start one with 'ray start --head' or fix the address") from None


def connect_ray(address: str | None, num_cpus: int) -> bool:
    """Start a local Ray (``num_cpus`` CPUs) or join ``address``; False if Ray was already running.

    Raises :class:`RayClusterError` naming the address when it cannot be joined.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"runtime_env": worker_environment(), "log_to_driver": False}
    if not address:  # "local": a Ray of our own, even where another local one runs (a second campaign)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, configure_logging=True,
                 logging_level="ERROR", **options)
        return True
    check_reachable(address)
    send_token_if_available()
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RayClusterError(f"address {address!r}: cannot join the Ray cluster: {first_line}") from None
    return True
