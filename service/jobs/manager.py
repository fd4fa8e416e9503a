"""The JobManager: this replica's registry of runners, admission of queued jobs,
lease keeping, adoption of orphaned jobs, and the user's control requests."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pymongo.errors import ConnectionFailure

from ..settings import Settings
from ..store.db import Database
from ..typedefs import DB_KEY, MANAGER_KEY, SETTINGS_KEY
from .model import ACTIONS, JobState, utcnow
from .repo import JobRepo
from .runner import Kind, Runner
from .workers import BuildPool

log = logging.getLogger(__name__)

QUEUE_SCAN = 100
# Kept back from the grace period for cancelled runners to release their jobs.
CANCEL_SECONDS = 2.0


class JobManager:
    def __init__(self, db: Database, settings: Settings, kinds: dict[str, Kind]) -> None:
        self.db = db
        self.settings = settings
        self.kinds = kinds
        self.repo = JobRepo(db.jobs, db.job_progress)
        self.owner = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.runners: dict[str, Runner] = {}
        self.workers = BuildPool(settings.job_workers)
        self.finished: Counter[tuple[str, str]] = Counter()  # (kind, outcome) -> count, for /metrics
        self.accepting = False
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._shutdown_at: float | None = None
        # Per-kind limit of jobs holding a slot in one org. Team jobs of an org
        # run one at a time: two changing the same users at once could not each
        # be rolled back exactly.
        self._org_limits = {"import": settings.max_imports_per_org, "teams": 1}

    def lease_until(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self.settings.job_lease_seconds)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        self.accepting = True
        self._loop_task = asyncio.create_task(self._loop(), name="job-manager")
        self.wake()

    def begin_shutdown(self) -> None:
        """SIGTERM: stop admitting and tell every runner to hand its job back at
        its next checkpoint. Called as soon as aiohttp starts shutting down,
        before it waits for open requests, so the grace period is shared."""
        if self._shutdown_at is None:
            self._shutdown_at = time.monotonic()
        self.accepting = False
        for runner in self.runners.values():
            runner.stop()

    async def stop(self) -> None:
        """Two-phase shutdown: runners that have not handed their jobs back by the
        end of SHUTDOWN_GRACE_SECONDS (counted from begin_shutdown) are cancelled,
        which releases their jobs too."""
        self.begin_shutdown()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        tasks = [r.task for r in self.runners.values() if r.task is not None]
        if not tasks:
            return
        assert self._shutdown_at is not None
        left = self.settings.shutdown_grace_seconds - (time.monotonic() - self._shutdown_at) - CANCEL_SECONDS
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, left))
        for task in pending:
            log.warning("job task %s did not stop within the grace period; cancelling it", task.get_name())
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_SECONDS)

    def wake(self) -> None:
        self._wake.set()

    def runner_done(self, runner: Runner) -> None:
        self.runners.pop(runner.job_id, None)
        self.wake()

    async def start_attached(self, job: dict[str, Any], progress: dict[str, Any], sink: Any) -> Runner:
        """Creates a job that runs at once on this replica, writing into ``sink``
        (a streamed download: the person is waiting, so it is not queued)."""
        doc = await self.repo.create(job, progress, owner=self.owner, lease_until=self.lease_until())
        runner = Runner(self, doc, self.kinds[doc["kind"]], sink=sink)
        self.runners[runner.job_id] = runner
        runner.start()
        return runner

    # -- control -------------------------------------------------------------

    async def control(self, org_id: str, job_id: str, action_name: str) -> dict[str, Any]:
        """pause / resume / terminate: one guarded write, then the local runner (if
        this replica owns the job) is told at once; other owners see it on their tick."""
        doc = await self.repo.request(org_id, job_id, ACTIONS[action_name])
        runner = self.runners.get(job_id)
        if runner is not None:
            runner.apply(doc["state"], doc["rev"])
        else:
            # A terminated queued/failed job, or a resumed job nobody runs: the
            # scheduler adopts it (its lease is expired) on the next tick, now.
            self.wake()
        return doc

    # -- the loop ------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.settings.job_poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._tick()
            except ConnectionFailure as exc:
                log.warning("job manager tick: database unavailable (%s); retrying next tick", exc)
            except Exception:
                log.exception("job manager tick failed; retrying next tick")

    async def _tick(self) -> None:
        if self.runners:
            docs = await self.repo.renew(self.owner, list(self.runners), self.lease_until())
            for doc in docs:
                runner = self.runners.get(doc["_id"])
                if runner is None:
                    continue
                if not doc["owned"]:
                    runner.lose()
                else:
                    runner.apply(doc["state"], doc["rev"])
        if self.accepting:
            await self._adopt_orphans()
            await self._admit()

    async def _adopt_orphans(self) -> None:
        for job_id in await self.repo.orphans(QUEUE_SCAN):
            if job_id in self.runners:
                continue
            doc = await self.repo.adopt(job_id, self.owner, self.lease_until())
            if doc is None:
                continue
            if doc["params"].get("stream"):
                # Its download's connection went with the replica that died.
                await self.repo.transition(
                    doc["_id"],
                    self.owner,
                    [JobState.RUNNING, JobState.PAUSED, JobState.TERMINATING],
                    JobState.TERMINATED,
                    error="the replica serving the download stopped",
                )
                continue
            # Rollbacks always run (they free a slot); other work respects capacity.
            if doc["state"] != JobState.TERMINATING.value and self._full():
                await self.repo.release(doc["_id"], self.owner)
                continue
            log.info("adopted job %s (%s)", doc["_id"], doc["state"])
            self._start(doc)

    async def _admit(self) -> None:
        if self._full():
            return
        for queued in await self.repo.queued(QUEUE_SCAN):
            if self._full():
                return
            limit = self._org_limits.get(queued["kind"])
            if limit is not None:
                holders = await self.repo.slot_holders(queued["org_id"], queued["kind"])
                if len(holders) >= limit:
                    continue
            doc = await self.repo.claim_queued(queued["_id"], self.owner, self.lease_until())
            if doc is None:
                continue
            if limit is not None:
                # Another replica may have claimed a job of the same org at the same
                # moment: the oldest jobs keep their slots, the rest go back.
                holders = await self.repo.slot_holders(doc["org_id"], doc["kind"])
                if doc["_id"] not in holders[:limit]:
                    await self.repo.unclaim(doc["_id"], self.owner)
                    continue
            log.info("started job %s (%s)", doc["_id"], doc["kind"])
            self._start(doc)

    def _full(self) -> bool:
        return len(self.runners) >= self.settings.max_running_jobs

    def _start(self, doc: dict[str, Any]) -> None:
        runner = Runner(self, doc, self.kinds[doc["kind"]])
        self.runners[runner.job_id] = runner
        runner.start()


async def begin_shutdown(app: web.Application) -> None:
    """on_shutdown: runs before aiohttp waits for open requests."""
    manager = app.get(MANAGER_KEY)
    if manager is not None:
        manager.begin_shutdown()


async def manager_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx, registered after the database's so it is torn down first."""
    from .kinds import KINDS

    manager = JobManager(app[DB_KEY], app[SETTINGS_KEY], KINDS)
    app[MANAGER_KEY] = manager
    await manager.start()
    yield
    await manager.stop()
    manager.workers.close()
