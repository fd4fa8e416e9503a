"""A real FerretDB for the tests (or the MongoDB named by MONGODB_URI)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
FERRETDB = ROOT / ".tools" / "bin" / "ferretdb"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class DevDatabase:
    """One FerretDB process on SQLite in a temporary directory; restartable on
    the same port and data, for tests that take the database away mid-job."""

    def __init__(self) -> None:
        if not FERRETDB.exists():
            subprocess.run([str(ROOT / "scripts" / "build-ferretdb")], check=True)
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="collect-jobs-db-"))
        # FerretDB's own output (errors, a panic's trace), outside the data
        # directory so it outlives close() when the server died under a test.
        self.log = Path(f"{self.data}.log")
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = self._spawn(log)
        # Restarted mid-test while the machine is busy (CI, two cores), FerretDB
        # has taken longer than 30 s to listen; that failed the outage tests.
        wait_for_port(self.port, timeout=120, process=self.process)

    def _spawn(self, log) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(FERRETDB),
                "--handler=sqlite",
                f"--sqlite-url=file:{self.data}/",
                f"--listen-addr=127.0.0.1:{self.port}",
                "--telemetry=disable",
                "--debug-addr=-",
                "--log-level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    def died(self) -> str | None:
        """Why the server is gone when nobody stopped it (None while it runs):
        its exit status and the end of its log."""
        if self.process is None or self.process.poll() is None:
            return None
        tail = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        return f"FerretDB on port {self.port} exited with {self.process.returncode}; its log ({self.log}) ends:\n{tail}"

    def stop(self, abruptly: bool = False) -> None:
        """Shuts the database down; ``abruptly``: kill -9, as a crash or a lost
        network does (a graceful stop lets open connections go on for a while)."""
        if self.process is not None:
            if abruptly:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        if self.log.exists() and not self.log.stat().st_size:
            self.log.unlink()


@contextlib.contextmanager
def database_server() -> Iterator[tuple[str, DevDatabase | None]]:
    """Yields a base URI (no database in its path) and the server we started, if any."""
    given = os.environ.get("MONGODB_URI")
    if given:
        parts = urlsplit(given)
        yield urlunsplit((parts.scheme, parts.netloc, "/", parts.query, "")), None
        return
    server = DevDatabase()
    server.start()
    try:
        yield server.uri, server
    finally:
        server.close()


def with_database(base_uri: str, name: str) -> str:
    parts = urlsplit(base_uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
