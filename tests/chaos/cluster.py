"""The system under test: one FerretDB, three `python -m service` replicas on
it, an admin API key per organisation, and the faults the nemesis injects.

Every fault is recorded as a window (kind, target, start, end) in wall-clock
seconds; the 5xx check allows 503 only inside the windows that document it
(the database away, a replica shutting down).

The clock step is a stand-in. Stepping one replica's clock needs root (or
libfaketime, which this machine does not have), so ``clock_step`` SIGSTOPs a
replica for more than two leases: when it wakes, its monotonic and wall
clocks have jumped forward by that much against everything it believed
(its lease, its deadlines, its in-flight writes), which is what a forward
step does to a process. A backward step cannot be simulated this way; the
service judges leases by the database's clock, so a replica's wall clock
only enters the records' created_at, which the checks do not trust for
ordering beyond one replica."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..support.devdb import ROOT, DevDatabase, with_database
from ..support.procs import ServiceProcess
from .plan import LEASE_SECONDS, ORGS, REPLICAS

PEPPER = "chaos-pepper-0123456789abcdef0123456789abcdef"
ENV = {
    "JOB_POLL_SECONDS": "0.5",
    "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    "SHUTDOWN_GRACE_SECONDS": "5",
    "DB_TIMEOUT_SECONDS": "20",
    # Shorter than the longest outages the plan makes, so some jobs fail and are retried.
    "DB_RETRY_SECONDS": "10",
    "ROLLBACK_GIVE_UP_SECONDS": "30",
    "MAX_IMPORTS_PER_ORG": "1",
    "AUTH_API_KEY_PEPPER": PEPPER,
    "LOG_LEVEL": "INFO",
}
# After the database is back, the replicas' pools take a while to notice.
DB_GRACE = 15.0


@dataclass
class Window:
    kind: str
    target: str
    start: float
    end: float | None = None


@dataclass
class Cluster:
    log_dir: Path
    db: DevDatabase = field(default_factory=DevDatabase)
    name: str = field(default_factory=lambda: f"chaos_{uuid.uuid4().hex[:8]}")
    replicas: dict[str, ServiceProcess] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)  # SIGSTOPped now
    down: set[str] = field(default_factory=set)  # not running now
    # Under a fault now, from its first signal to its restart: a SIGTERMed
    # replica still shutting down is not yet "down", and another lane must not
    # kill it meanwhile (two lanes would restart it twice).
    faulted: set[str] = field(default_factory=set)
    db_up: bool = True

    @property
    def uri(self) -> str:
        return with_database(self.db.uri, self.name)

    async def start(self) -> None:
        await asyncio.to_thread(self.db.start)
        for org in ORGS:
            self.keys[org] = await asyncio.to_thread(self._make_key, org)
        for name, workers in REPLICAS.items():
            self.replicas[name] = ServiceProcess(self.uri, self.log_dir, name, JOB_WORKERS=str(workers), **ENV)
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in self.replicas.values()))

    def _make_key(self, org: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
        made = subprocess.run(
            [sys.executable, "-m", "service", "api-keys", "create", "--org", org, "--role", "admin", "--name", "chaos"],
            cwd=ROOT,
            env={**env, "MONGODB_URI": self.uri, "AUTH_API_KEY_PEPPER": PEPPER},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if made.returncode:
            raise RuntimeError(f"api-keys create --org {org}: {made.stderr}")
        return made.stdout.strip()

    def up(self) -> list[str]:
        """Replicas that answer now (running and not stopped)."""
        return [n for n in self.replicas if n not in self.down and n not in self.stopped]

    def headers(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[org]}"}

    # -- faults ------------------------------------------------------------

    async def fault(self, kind: str, args: dict) -> bool:
        """Inject one fault and undo it after ``down`` seconds; False when its
        target is already down or stopped (a fault of another lane)."""
        down = float(args.get("down", 0))
        if kind == "db":
            if not self.db_up:
                return False
            await self._db_outage(down, bool(args.get("abrupt")))
            return True
        name = args["replica"]
        proc = self.replicas[name]
        if name in self.faulted or name in self.down or name in self.stopped:
            return False
        self.faulted.add(name)
        window = Window(kind, name, time.time())
        self.windows.append(window)
        try:
            if kind in ("stop", "clock_step"):
                self.stopped.add(name)
                proc.signal(signal.SIGSTOP)
                await asyncio.sleep(down)
                proc.signal(signal.SIGCONT)
                self.stopped.discard(name)
            elif kind == "kill9":
                self.down.add(name)
                proc.signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 10)
                await asyncio.sleep(down)
                await self._restart(name)
            elif kind == "sigterm":
                proc.signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 15)
                except subprocess.TimeoutExpired:
                    window.kind = "sigterm(hung)"
                    proc.signal(signal.SIGKILL)
                    await asyncio.to_thread(proc.wait, 10)
                self.down.add(name)
                await asyncio.sleep(down)
                await self._restart(name)
        finally:
            window.end = time.time()
            self.faulted.discard(name)
        return True

    async def _restart(self, name: str) -> None:
        await asyncio.to_thread(self.replicas[name].start)
        self.down.discard(name)

    async def _db_outage(self, down: float, abrupt: bool) -> None:
        window = Window("db", "abrupt" if abrupt else "graceful", time.time())
        self.windows.append(window)
        self.db_up = False
        try:
            await asyncio.to_thread(self.db.stop, abrupt)
            await asyncio.sleep(down)
            await asyncio.to_thread(self.db.start)
        finally:
            self.db_up = True
            window.end = time.time() + DB_GRACE

    async def heal(self) -> None:
        """Everything running again, for the settle phase."""
        if self.db.process is None or self.db.process.poll() is not None:
            await asyncio.to_thread(self.db.start)
            self.db_up = True
        for name, proc in self.replicas.items():
            if name in self.stopped:
                proc.signal(signal.SIGCONT)
                self.stopped.discard(name)
            if proc.process is None or proc.process.poll() is not None:
                await self._restart(name)

    def exited_unexpectedly(self) -> list[str]:
        return [
            n for n, p in self.replicas.items() if n not in self.down and p.process is not None and p.process.poll() is not None
        ]

    async def close(self) -> None:
        for name, proc in self.replicas.items():
            if name in self.stopped:
                proc.signal(signal.SIGCONT)
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.replicas.values()), return_exceptions=True)
        await asyncio.to_thread(self.db.close)
