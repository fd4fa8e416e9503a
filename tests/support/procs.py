"""Running `python -m service` as a real process, the way Kubernetes does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .devdb import ROOT, free_port, wait_for_port


class ServiceProcess:
    def __init__(self, mongodb_uri: str, log_dir: Path, name: str = "svc", **env: str) -> None:
        self.port = free_port()
        self.name = name
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.env = {
            **os.environ,
            "MONGODB_URI": mongodb_uri,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "REPLICA_ID": name,
            "LOG_LEVEL": "INFO",
            # Off unless the test configures authentication itself.
            **({} if any(name.startswith("AUTH_") for name in env) else {"AUTH_DISABLED": "true"}),
            **env,
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for_port(self.port, timeout=120, process=self.process)  # a busy machine starts slowly
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def exits_within(proc: ServiceProcess, seconds: float) -> tuple[int, float]:
    started = time.monotonic()
    code = proc.wait(seconds)
    return code, time.monotonic() - started
