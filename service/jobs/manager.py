"""The JobManager: this replica's registry of runners, fair admission of queued
jobs, lease keeping, adoption of orphaned jobs, and the user's control requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pymongo.errors import ConnectionFailure

from ..background import end_if_cancelled, stop
from ..errors import TooManyRequests
from ..logs import JobLogger
from ..metrics import Metrics
from ..settings import Settings
from ..store.clock import DbClock
from ..store.db import Database
from ..typedefs import DB_KEY, MANAGER_KEY, METRICS_KEY, SETTINGS_KEY
from .repo import Claim, ControlResult, JobRepo, rollback_needs_slot
from .reservations import QUEUED, STREAMS, Reservations
from .runner import Kind, Runner
from .states import DOWNLOAD_ENDED, ROLLING_BACK, USER_TRANSITIONS, JobState, values
from .workers import BuildPool

log = logging.getLogger(__name__)

SWEEP_LIMIT = 100  # orphans claimed per tick; every one is found on a later tick
# Kept back from the grace period for cancelled runners to release their jobs.
CANCEL_SECONDS = 2.0


class JobManager:
    def __init__(self, db: Database, settings: Settings, kinds: dict[str, Kind], metrics: Metrics | None = None) -> None:
        self.db = db
        self.settings = settings
        self.kinds = kinds
        self.clock = DbClock()
        self.repo = JobRepo(db.jobs, db.job_progress, self.clock, settings.job_lease_seconds)
        self.reservations = Reservations(db.reservations, self.repo.states)
        # This replica's stream slots (MAX_STREAMS): taken and given back with
        # no await in between, so the count is exact within the process.
        self.stream_slots = 0
        # When each org last had a job admitted here: admission takes turns.
        self._admitted_at: dict[str, float] = {}
        self.owner = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.runners: dict[str, Runner] = {}
        self.metrics = metrics or Metrics()
        self.workers = BuildPool(settings.job_workers, settings.max_field_size)
        self.accepting = False
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._unowned_after: str | None = None
        self._shutdown_at: float | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.clock.sync(self.db.db)
        except ConnectionFailure as exc:
            log.warning("could not read the database's clock yet (%s); the first tick will", exc)
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
            await stop(self._loop_task)
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
        if self.runners.get(runner.job_id) is runner:
            del self.runners[runner.job_id]
        self.wake()

    # -- users' requests -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def queue_slot(self, org_id: str, job_id: str) -> AsyncIterator[None]:
        """Reserves one of the org's MAX_QUEUED_PER_ORG queued jobs for
        ``job_id`` before its upload is read (one conditional write: racing
        requests cannot both take the last one): 429 when none is left. Given
        back if the request fails before its job exists, else when the job
        leaves the queue (admitted or terminated)."""
        await self._queue_place(org_id, job_id)
        try:
            yield
        except BaseException:
            await asyncio.shield(self.reservations.release(org_id, QUEUED, job_id))
            raise

    async def _queue_place(self, org_id: str, job_id: str) -> None:
        """One of the org's MAX_QUEUED_PER_ORG queued places for ``job_id`` (a
        job that holds one already takes none twice), or 429."""
        limit = self.settings.max_queued_per_org
        if not await self.reservations.ensure(org_id, QUEUED, job_id, 1, limit):
            raise TooManyRequests(
                f"Your organisation already has {limit} queued jobs (MAX_QUEUED_PER_ORG); "
                "wait for some to start, or terminate the ones you do not need.",
                retry_after=30,
            )

    async def create(self, job: dict[str, Any], progress: dict[str, Any]) -> dict[str, Any]:
        """A new queued job; the loop looks at the queue at once."""
        doc = await self.repo.create(job, progress)
        assert isinstance(doc, dict)
        self.wake()
        return doc

    async def start_attached(self, job: dict[str, Any], progress: dict[str, Any], sink: Any) -> Runner:
        """Creates a job that runs at once on this replica, writing into ``sink``
        (a streamed download: the person is waiting, so it is not queued).
        Hold stream_slot() first, before the response is prepared."""
        sent = time.monotonic()
        claim = await self.repo.create(job, progress, owner=self.owner)
        assert isinstance(claim, Claim)
        runner = Runner(self, claim, self.kinds[job["kind"]], sink=sink, claimed_at=sent)
        self.runners[runner.job_id] = runner
        runner.start()
        return runner

    @contextlib.asynccontextmanager
    async def stream_slot(self, org_id: str, job_id: str) -> AsyncIterator[None]:
        """A streamed download's two slots, held for as long as the download
        runs: one of this replica's MAX_STREAMS (counted in the process, no
        await between the check and the take) and one of the org's
        MAX_STREAMS_PER_ORG across replicas (a reservation naming the job).
        429 with Retry-After when either is full. Streams take no process slot
        of the queued jobs."""
        if self.stream_slots >= self.settings.max_streams:
            raise TooManyRequests(
                f"This replica is serving {self.stream_slots} downloads (MAX_STREAMS); retry shortly or run the export in the background.",
                retry_after=10,
            )
        self.stream_slots += 1
        try:
            limit = self.settings.max_streams_per_org
            if not await self.reservations.take(org_id, STREAMS, job_id, 1, limit):
                raise TooManyRequests(
                    f"Your organisation has {limit} downloads open (MAX_STREAMS_PER_ORG); finish or terminate one first.",
                    retry_after=10,
                )
            try:
                yield
            finally:
                await asyncio.shield(self.reservations.release(org_id, STREAMS, job_id))
        finally:
            self.stream_slots -= 1

    async def control(self, org_id: str, job_id: str, action_name: str, **guard: Any) -> ControlResult:
        """pause / resume / terminate / retry / undo: one guarded write (``guard``:
        see JobRepo.request), then the local runner (if this replica owns the
        job) is told at once, before the response is sent; other owners see it
        on their next tick or checkpoint. A queued job that leaves the queue
        gives its queue reservation back."""
        transition = USER_TRANSITIONS[action_name]
        if transition.target is JobState.QUEUED:
            # A retry queues the job again: it takes one of the org's queued
            # places first, like a new job (ensure: a repeated retry takes none twice).
            await self._queue_place(org_id, job_id)
            try:
                result = await self.repo.request(org_id, job_id, transition, **guard)
            except BaseException:
                await asyncio.shield(self.reservations.release(org_id, QUEUED, job_id))
                raise
            if result.job["state"] != JobState.QUEUED.value:
                await self.reservations.release(org_id, QUEUED, job_id)
        else:
            result = await self.repo.request(org_id, job_id, transition, **guard)
        if result.changed and result.before == JobState.QUEUED.value:
            await self.reservations.release(org_id, QUEUED, job_id)
        runner = self.runners.get(job_id)
        if runner is not None:
            runner.apply(result.job)
        if result.changed:
            # A terminated queued/failed job, a resumed job nobody runs, a
            # retried one: the loop claims it now rather than at the next tick.
            self.wake()
        return result

    # -- the loop ------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.settings.job_poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                # Python 3.11's timeout can turn a cancel that arrives as it
                # expires into TimeoutError; a cancelled loop must still end.
                end_if_cancelled()
            self._wake.clear()
            try:
                await self._tick()
            except ConnectionFailure as exc:
                log.warning("job manager tick: database unavailable (%s); retrying next tick", exc)
            except Exception:
                log.exception("job manager tick failed; retrying next tick")
            end_if_cancelled()  # PyMongo may have swallowed it (service/background.py)

    async def _tick(self) -> None:
        await self.clock.sync(self.db.db)
        await self._renew()
        if self.accepting:
            await self._adopt_orphans()
            await self._claim_unowned()
            await self._admit()

    async def _renew(self) -> None:
        leases = {job_id: r.epoch for job_id, r in self.runners.items() if not (r.lost or r.finished)}
        if not leases:
            return
        sent = time.monotonic()
        for doc in await self.repo.renew(leases):
            runner = self.runners.get(doc["_id"])
            if runner is None:
                continue
            if not doc["owned"]:
                log.warning("job %s: another replica took it over; this one stops writing", doc["_id"])
                runner.lose()
            else:
                runner.lease_renewed(sent)
                runner.apply(doc)

    async def _adopt_orphans(self) -> None:
        """Jobs whose owner's lease expired by the database's clock."""
        for job_id, epoch in await self.repo.expired(SWEEP_LIMIT):
            if job_id in self.runners:
                continue  # ours and slow to renew: the renewal decides
            sent = time.monotonic()
            claim = await self.repo.adopt(job_id, epoch, self.owner)
            if claim is not None:
                await self._take(claim, sent, "adopted")

    async def _claim_unowned(self) -> None:
        """Jobs that need a runner and have none: handed back, resumed after their
        runner left, terminated while queued or failed, or a rollback whose
        backoff is over; a window of them per tick, every one in turn."""
        jobs, self._unowned_after = await self.repo.unowned(SWEEP_LIMIT, self._unowned_after)
        for job in jobs:
            if job["_id"] in self.runners or not await self._may_run(job):
                continue
            sent = time.monotonic()
            claim = await self.repo.claim_unowned(job["_id"], self.owner)
            if claim is not None:
                await self._take(claim, sent, "claimed")

    async def _may_run(self, job: dict[str, Any]) -> bool:
        """A rollback of a kind with an org limit waits for the org's slot like
        admission does: a job terminated after it failed (or while queued) held
        no slot, and its rollback must not run beside the org's next job of
        that kind (a teams rollback deleting a user that job is adding). A job
        that never started wrote nothing: its rollback runs at once."""
        limit = self.kinds[job["kind"]].org_limit(self.settings)
        if limit is None or not rollback_needs_slot(job):
            return True
        return await self.repo.rollback_blockers(job["org_id"], job["kind"], job["_id"]) < limit

    async def _take(self, claim: Claim, sent: float, how: str) -> None:
        job = claim.job
        if job["params"].get("stream"):
            # A stream found without its runner: terminated (by a user, on
            # another replica) after its runner had gone, or its replica died,
            # and its download's connection with it. Either way it ends here.
            why = (
                "the download was terminated"
                if job["state"] == JobState.TERMINATING.value
                else "the download broke off: the replica serving it stopped"
            )
            await self.repo.transition(job["_id"], claim.epoch, DOWNLOAD_ENDED, error=why)
            return
        # Rollbacks always run (they free a slot); other work respects capacity.
        if job["state"] not in values(ROLLING_BACK) and self._full():
            await self.repo.release(job["_id"], claim.epoch)
            return
        JobLogger(log, job).info("%s job %s (%s, epoch %d)", how, job["_id"], job["state"], claim.epoch)
        if how == "adopted":
            self.metrics.adopted(job["kind"])
        self._start(claim, sent)

    async def _admit(self) -> None:
        """Fair admission: every org with queued jobs is looked at on every
        tick, one job per org and kind per tick, and the orgs take turns: the
        org running the fewest jobs (on every replica) goes first, then the
        one this replica admitted least recently, then the oldest queued job.
        An org that queued a hundred jobs thus gets no more slots than one
        that queued one while both have work. An org at its kind's limit is
        skipped, never waited behind. The queue is read before the slot
        holders, and a claim is an atomic compare-and-set, so two replicas
        admitting at once never exceed a limit."""
        if self._full():
            return
        groups = await self.repo.queue_groups()
        if not groups:
            return
        running = await self.repo.running_by_org()
        heads = []
        for org_id, kind in groups:
            heads += [(job_id, org_id, kind) for job_id in await self.repo.queued(org_id, kind, 1)]

        def turn(head: tuple[str, str, str]) -> tuple[int, float, str]:
            job_id, org_id, _ = head
            return running.get(org_id, 0), self._admitted_at.get(org_id, 0.0), job_id

        for job_id, org_id, kind in sorted(heads, key=turn):
            if self._full():
                return
            limit = self.kinds[kind].org_limit(self.settings)
            if limit is not None and await self.repo.slot_holders(org_id, kind) >= limit:
                continue
            sent = time.monotonic()
            claim = await self.repo.claim_queued(job_id, self.owner)
            if claim is not None:
                self._admitted_at[org_id] = time.monotonic()
                JobLogger(log, claim.job).info("started job %s (%s, epoch %d)", job_id, kind, claim.epoch)
                self._start(claim, sent)
                await self.reservations.release(org_id, QUEUED, job_id)

    def _full(self) -> bool:
        """Process slots are for work: a paused job and a streamed download take none."""
        busy = sum(1 for r in self.runners.values() if r.sink is None and not r.paused)
        return busy >= self.settings.max_running_jobs

    def _start(self, claim: Claim, sent: float) -> None:
        runner = Runner(self, claim, self.kinds[claim.job["kind"]], claimed_at=sent)
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

    manager = JobManager(app[DB_KEY], app[SETTINGS_KEY], KINDS, app[METRICS_KEY])
    app[MANAGER_KEY] = manager
    await manager.start()
    yield
    await manager.stop()
    manager.workers.close()
