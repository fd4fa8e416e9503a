"""The engine on its own: real JobManagers (two "replicas" in one process) on the
real database, running a job kind the tests define, with a replica that can be
frozen (its manager stops ticking, so its leases lapse, as when its process
stalls) and a runner that can be held inside a write after its deadline was
set (as when the process stalls between the check and the send)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from service.jobs import fence
from service.jobs.manager import JobManager
from service.jobs.model import new_job_id
from service.jobs.runner import Kind
from service.store.db import Database

# A lease of 2 s (1 s of it usable for writes) and a tick every 0.1 s: a
# replica that stops ticking loses its jobs within about 2 s.
FAST = {"job_lease_seconds": 2.0, "job_poll_seconds": 0.1, "shutdown_grace_seconds": 3.0}


class Replica:
    """A JobManager and the switch that freezes it."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self._thawed = asyncio.Event()
        self._thawed.set()
        tick = manager._tick

        async def frozen_tick() -> None:
            await self._thawed.wait()
            await tick()

        manager._tick = frozen_tick  # type: ignore[method-assign]

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()
        self.manager.wake()

    def runs(self, job_id: str) -> bool:
        return job_id in self.manager.runners

    def owns_task(self, task: asyncio.Task[Any] | None) -> bool:
        return any(r.task is task for r in self.manager.runners.values())


class Hold:
    """Holds the runners of one replica inside their next fenced write, after
    its deadline was set and before anything is sent."""

    def __init__(self) -> None:
        self.replica: Replica | None = None
        self.entered = asyncio.Event()
        self.released = asyncio.Event()

    def arm(self, replica: Replica) -> None:
        self.replica = replica

    def release(self) -> None:
        self.released.set()

    async def point(self, gate: fence.Fence) -> None:
        # A fence is its runner's (its lease): a write sent from a task the
        # runner started (a group of concurrent sends) is held too.
        if self.replica is not None and any(r is gate._lease for r in self.replica.manager.runners.values()):
            self.replica = None
            self.entered.set()
            await self.released.wait()


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> Hold:
    held = Hold()
    real_write = fence.Fence.write

    @contextlib.asynccontextmanager
    async def write(self: fence.Fence) -> AsyncIterator[None]:
        async with real_write(self):
            await held.point(self)
            yield

    monkeypatch.setattr(fence.Fence, "write", write)
    return held


@pytest.fixture
async def replicas(db: Database, settings) -> AsyncIterator[Callable[..., Awaitable[Replica]]]:
    """Starts replicas running the given kinds on the test's database."""
    started: list[tuple[JobManager, Database]] = []

    async def start(kinds: dict[str, Kind], **overrides: Any) -> Replica:
        own = Database.connect(settings.mongo)
        manager = JobManager(own, settings.replace(**{**FAST, **overrides}), kinds)
        replica = Replica(manager)
        await manager.start()
        started.append((manager, own))
        return replica

    yield start
    for manager, own in started:
        manager._tick = JobManager._tick.__get__(manager)  # type: ignore[method-assign]
        await manager.stop()
        manager.workers.close()
        await own.close()


async def create_job(replica: Replica, kind: str, params: dict[str, Any], org_id: str = "org-a") -> str:
    job_id = new_job_id()
    await replica.manager.create(
        {"_id": job_id, "org_id": org_id, "kind": kind, "created_by": "test", "params": params}, {"processed": 0}
    )
    return job_id


async def state_of(db: Database, job_id: str) -> dict[str, Any]:
    job = await db.jobs.find_one({"_id": job_id})
    assert job is not None
    return job


async def wait_job(
    db: Database, job_id: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
) -> dict[str, Any]:
    """Polls the job document until ``predicate`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate(job := await state_of(db, job_id)):
        assert loop.time() < deadline, f"timed out waiting for {what}: job is {job['state']} (owner {job.get('owner')})"
        await asyncio.sleep(0.02)
    return job
