"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, started on a free port.

Uses the server installed from Debian's packages (``apt-get install postgresql``); ``.ci/run``
installs it. As root, the server runs as the ``postgres`` user, since PostgreSQL refuses root.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None if no server is installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        binaries = server_binaries()
        if binaries is None:
            raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = binaries
        self.folder = folder
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise RuntimeError("running as root needs runuser to start PostgreSQL as 'postgres'")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        folder.mkdir(parents=True, exist_ok=True)
        if self.prefix:
            shutil.chown(folder, "postgres")
            os.chmod(folder, 0o700)

    def _run(self, *command: str) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True, timeout=120, cwd="/")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://nas@127.0.0.1:{self.port}/nas"

    def start(self) -> str:
        self._run(str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-U", "nas", "--auth=trust", "-E", "UTF8")
        self.resume()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "nas", "nas")
        return self.url

    def pause(self) -> None:
        """Stop the server as a restart does (its data stays): clients lose their connections."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server (again) on the same port and data."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-o", options, "-l",
                  str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
