"""The client side of the device server (:mod:`latency.worker` is the server process).

:class:`DeviceServer` names the one server of a (host, device, runtime, threads, batch, mode): an
abstract Unix socket derived from those settings and the lock directory, so every process on the
host that measures with the same settings reaches the same server. The first request starts it;
requests from several processes take turns (a client lock), each one streamed back as JSON lines.

Isolation: a server that makes no progress for ``timeout_s`` (start-up counts against the first
task; waiting for the device lock is bounded by ``lock_timeout_s`` instead) is killed with its
process group and :class:`MeasurementTimeout` raised; one that dies raises
:class:`MeasurementCrash`. Either way the next request starts a fresh server, and the records
that came back before are kept.

The server is nobody's child: a shell starts it in the background and waits for it
(:data:`LAUNCHER`), and the server leaves for a session of its own as it starts. The process that
asked for it, a campaign's Ray worker say, may then exit without taking the server along. Ray
kills a worker's child processes when the worker exits, and a campaign replaces its workers every
few jobs: a server that was one worker's child died under another worker's measurement ("died
mid-request", with an empty log). Only the shell is that child; while it lives, its exit status
is the server's.

``private=True`` gives a server of its own that the caller stops after each request: the old
fresh-process-per-measurement design, kept for comparison in ``bench.latency``.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from latency.errors import DeviceUnavailableError, MeasurementCrash, MeasurementError, MeasurementTimeout
from nas.runtime.devicelock import DeviceBusyError, lock_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0  # importing MindSpore and setting up the device
# ``sh -c LAUNCHER sh LOG COMMAND...``: run COMMAND in the background with its output in LOG, print
# its process id, and wait for it (the shell's exit status is then COMMAND's).
LAUNCHER = 'log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!; wait $!'


@dataclass(frozen=True)
class ServerSettings:
    """What makes two servers different: measurements under other settings need another server."""

    device: str  # the target: CPU, GPU, Ascend
    device_id: int | None
    threads: int
    batch: int
    mode: str
    runtime: str
    idle_s: float = float(os.environ.get("NAS_SERVER_IDLE_S", 900.0))  # exit after this long without requests
    max_tasks: int = 500
    max_rss_mb: float = 4096.0
    keep_cells: int = 4

    @property
    def key(self) -> str:
        identity = json.dumps([self.device, self.device_id, self.threads, self.batch, self.mode, self.runtime])
        return hashlib.sha1(identity.encode()).hexdigest()[:12]


def servers_dir() -> Path:
    folder = lock_dir() / "servers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class DeviceServer:
    """One host's measurement server for ``settings``; see the module docstring."""

    def __init__(self, settings: ServerSettings, *, python: str | None = None, timeout_s: float = 300.0,
                 lock_timeout_s: float | None = 3600.0, private: bool = False) -> None:
        self.settings = settings
        self.python = python or sys.executable
        self.timeout_s = timeout_s
        self.lock_timeout_s = lock_timeout_s
        self.private = private
        self.key = settings.key + (f"-{uuid.uuid4().hex[:8]}" if private else "")
        folder = servers_dir()
        self.info_path = folder / f"{self.key}.json"
        self.log_path = folder / f"{self.key}.log"
        self.name = "nas-latency-" + hashlib.sha1(f"{folder.resolve()}|{self.key}".encode()).hexdigest()[:20]
        self.launches = 0  # servers this client started (tests and benchmarks read it)

    # ----- connecting --------------------------------------------------------------------------

    def _connect(self) -> socket.socket | None:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect("\0" + self.name)
            return connection
        except (ConnectionRefusedError, FileNotFoundError):
            connection.close()
            return None

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.setdefault("GLOG_v", "3")
        if self.settings.device == "CPU":
            env["OMP_NUM_THREADS"] = str(self.settings.threads)
        return env

    def _start(self) -> tuple[subprocess.Popen, int]:
        """Start a server detached (see the module's note): its launching shell, and its process id."""
        payload = {**asdict(self.settings), "info_path": str(self.info_path)}
        command = [self.python, "-m", "latency.worker", "--serve", self.name, json.dumps(payload)]
        try:
            process = subprocess.Popen(["/bin/sh", "-c", LAUNCHER, "sh", str(self.log_path), *command],
                                       cwd=str(servers_dir()), env=self._environment(), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as error:
            raise MeasurementError(f"cannot start the latency server with {self.python!r}: {error}") from None
        assert process.stdout is not None
        with process.stdout:
            line = process.stdout.readline()
        try:
            pid = int(line)
        except ValueError:
            process.wait(timeout=10)
            raise MeasurementError(f"cannot start the latency server with {self.python!r}: its launching "
                                   f"shell {_exit_text(process.returncode)}") from None
        self.launches += 1
        return process, pid

    def _connect_or_start(self) -> tuple[socket.socket, bool]:
        """A connection to the server, and whether this call started it."""
        connection = self._connect()
        if connection is not None:
            return connection, False
        process, pid = self._start()
        deadline = time.monotonic() + max(START_TIMEOUT_S, self.timeout_s)
        delay = 0.05
        while time.monotonic() < deadline:  # bounded by the start-up deadline
            connection = self._connect()
            if connection is not None:
                return connection, True
            code = process.poll()
            if code is not None and self._connect() is None:
                text = self.log_tail()
                if code == 3 or "device_error" in text:
                    raise DeviceUnavailableError(f"device {self.settings.device} unusable: {text}")
                raise MeasurementCrash(f"the latency server {_exit_text(code)} before serving; log: {text}")
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)
        _kill(pid)
        raise MeasurementTimeout(f"the latency server did not start within {max(START_TIMEOUT_S, self.timeout_s):g} s")

    def log_tail(self, limit: int = 600) -> str:
        try:
            lines = [line for line in self.log_path.read_text().splitlines()
                     if line.strip() and "Cell.__del__" not in line]
        except OSError:
            return "(no log)"
        return " | ".join(lines)[-limit:] or "(empty)"

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """One request at a time per server, across processes (waiting counts as device waiting)."""
        deadline = None if self.lock_timeout_s is None else time.monotonic() + self.lock_timeout_s
        with open(servers_dir() / f"{self.key}.turn", "a+") as handle:
            delay = 0.01
            while True:  # bounded by lock_timeout_s
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeviceBusyError(f"the latency server for {self.settings.device} stayed busy for "
                                              f"{self.lock_timeout_s:g} s") from None
                    time.sleep(delay)
                    delay = min(0.25, delay * 1.5)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ----- requests ----------------------------------------------------------------------------

    def request(self, payload: dict[str, Any], expected_version: str | None = None) -> Iterator[dict[str, Any]]:
        """Send one request; yield each record (events are handled here) until the server is done."""
        with self._turn():
            connection, started = self._greeted(payload)
            pid = None
            retried = False
            try:
                # a server just started imports MindSpore first; a running one answers at once
                deadline = time.monotonic() + (max(START_TIMEOUT_S, self.timeout_s) if started else self.timeout_s)
                buffer = b""
                while True:  # bounded by the deadlines
                    try:
                        # wait no longer than the deadline, so a silence past it is caught however
                        # briskly the records came before (a short timeout_s is checked exactly)
                        connection.settimeout(min(0.25, max(0.001, deadline - time.monotonic())))
                        try:
                            chunk = connection.recv(1 << 16)
                        except (ConnectionResetError, BrokenPipeError):
                            chunk = b""
                        if not chunk and pid is None and not retried:  # reached a server as it died
                            retried = True
                            connection.close()
                            time.sleep(0.2)
                            connection, started = self._greeted(payload)
                            deadline = time.monotonic() + (max(START_TIMEOUT_S, self.timeout_s) if started
                                                           else self.timeout_s)
                            continue
                        if not chunk:
                            raise MeasurementCrash(f"the latency server (pid {pid}) died mid-request; "
                                                   f"log: {self.log_tail()}")
                        buffer += chunk
                    except socket.timeout:
                        if time.monotonic() > deadline:
                            if pid is None:  # a running server that does not even greet: hung
                                pid = self._saved_pid()
                            if pid is not None:
                                _kill(pid)
                            raise MeasurementTimeout(f"the latency server on {self.settings.device} made no "
                                                     f"progress within {self.timeout_s:g} s and was killed")
                        continue
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        record = json.loads(line)
                        event = record.get("event")
                        if event == "ready":
                            pid = record["pid"]
                            if expected_version is not None and record["mindspore_version"] != expected_version:
                                raise MeasurementError(
                                    f"the latency server runs MindSpore {record['mindspore_version']} but the "
                                    f"stamp says {expected_version}; is {self.python} the interpreter you meant?")
                            deadline = time.monotonic() + self.timeout_s
                        elif event == "waiting_for_device":  # lock_timeout_s bounds this wait
                            wait = self.lock_timeout_s if self.lock_timeout_s is not None else 7 * 24 * 3600.0
                            deadline = time.monotonic() + wait + self.timeout_s
                        elif event == "locked":
                            deadline = time.monotonic() + self.timeout_s
                        elif event in ("done", "status", "stopping", "error"):
                            yield record
                            return
                        else:
                            yield record
                            deadline = time.monotonic() + self.timeout_s  # the caller's time is not the server's
            finally:
                connection.close()
                if self.private:
                    self._stop_quietly()

    def _greeted(self, payload: dict[str, Any]) -> tuple[socket.socket, bool]:
        """Connect (starting the server if needed) and send ``payload``. A server that dies just
        as it is reached (killed a moment before) is replaced once."""
        for attempt in range(2):  # bounded: one retry
            connection, started = self._connect_or_start()
            try:
                connection.sendall((json.dumps(payload) + "\n").encode())
                return connection, started
            except (ConnectionResetError, BrokenPipeError):
                connection.close()
                if attempt:
                    raise MeasurementCrash(f"the latency server refused the request twice; log: {self.log_tail()}")
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def _saved_pid(self) -> int | None:
        try:
            return int(json.loads(self.info_path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _stop_quietly(self) -> None:
        connection = self._connect()
        if connection is None:
            return
        with connection:
            try:
                connection.sendall(b'{"op": "stop"}\n')
                connection.settimeout(10.0)
                connection.recv(1 << 12)
            except OSError:
                pass

    def status(self) -> dict[str, Any] | None:
        """The running server's status, or None when none runs (never starts one)."""
        connection = self._connect()
        if connection is None:
            return None
        with connection:
            try:
                connection.sendall(b'{"op": "ping"}\n')
                connection.settimeout(30.0)
                data = b""
                while data.count(b"\n") < 2:  # ready, then status
                    chunk = connection.recv(1 << 16)
                    if not chunk:
                        return None
                    data += chunk
            except OSError:
                return None
        return json.loads(data.split(b"\n")[1])

    def stop(self) -> bool:
        """Stop the running server; False when none ran."""
        if self._connect() is None:
            return False
        self._stop_quietly()
        return True


@dataclass(frozen=True)
class ServerRecord:
    """A device server this host's lock directory knows of: its key, process, start time and
    settings (as it saved them), and whether the process still runs."""

    key: str
    pid: int
    alive: bool
    started: float
    settings: dict[str, Any]


def running_servers() -> list[ServerRecord]:
    """The servers this host's lock directory knows of, with their saved settings."""
    found = []
    for path in sorted(servers_dir().glob("*.json")):
        try:
            info = json.loads(path.read_text())
            pid = int(info.get("pid", -1))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        found.append(ServerRecord(key=path.stem, pid=pid, alive=_alive(pid), started=float(info.get("started", 0.0)),
                                  settings=dict(info.get("settings") or {})))
    return found


def stop_server(pid: int) -> None:
    """End the server process ``pid`` and its process group (what it measured is already back)."""
    _kill(pid)
    for path in servers_dir().glob("*.json"):
        try:
            if int(json.loads(path.read_text()).get("pid", -1)) == pid:
                path.unlink()
        except (OSError, ValueError, TypeError):
            continue


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False  # killed, not yet reaped by the process that started it
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_text(code: int | None) -> str:
    """How a server ended, from its launching shell's exit status (128 + N: killed by signal N)."""
    return f"was killed by signal {code - 128}" if code is not None and code > 128 else f"exited with code {code}"


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
