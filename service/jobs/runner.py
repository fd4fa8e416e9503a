"""A Runner is one job running on this replica: an asyncio.Task plus an
asyncio.Event gate. Job code calls ``ctx.checkpoint()`` between batches; that
is the only place where pause, resume, terminate and shutdown take effect."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymongo.errors import ConnectionFailure, PyMongoError

from ..errors import InvalidTransition, JobFailed, JobStopped, JobTerminated
from .model import TERMINATE, JobState
from .repo import MAX_ERRORS_KEPT

if TYPE_CHECKING:
    from .manager import JobManager

log = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now", as opposed to
# "the database refused this": AutoReconnect, NetworkTimeout and
# ServerSelectionTimeoutError are all ConnectionFailures.
OUTAGE = (ConnectionFailure,)
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 5.0


@dataclass(frozen=True)
class Kind:
    """What a job kind provides. ``run`` continues from ``ctx.position`` (None at
    the start); ``rollback`` removes everything the job wrote and must itself be
    safe to run again from the start; ``cleanup`` frees what a finished job no
    longer needs (its upload)."""

    name: str
    run: Callable[[JobContext], Awaitable[None]]
    rollback: Callable[[JobContext], Awaitable[None]]
    cleanup: Callable[[JobContext], Awaitable[None]]


class JobContext:
    """What job code sees: the job document, the database, and checkpoint()."""

    def __init__(self, runner: Runner, job: dict[str, Any]) -> None:
        self._runner = runner
        self.job = job
        self.job_id: str = job["_id"]
        self.org_id: str = job["org_id"]
        self.params: dict[str, Any] = job.get("params") or {}
        self.db = runner.manager.db
        self.settings = runner.manager.settings
        self.workers = runner.manager.workers  # where an import's batches are built (JOB_WORKERS)
        self.progress: dict[str, Any] = dict(job.get("progress") or {})
        self.position: dict[str, Any] | None = job.get("checkpoint")
        self.sink = runner.sink
        self.outcome: JobState | None = None
        self.rolling_back = False
        self._errors_kept = len(job.get("errors") or [])
        self._rate_since = (time.monotonic(), self.progress.get("processed", 0))

    async def checkpoint(
        self,
        position: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] = (),
        on_pause: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Persist progress and the resumable position, then stop if terminated
        or shutting down, or wait here while paused. Call between batches only.
        ``on_pause`` runs before waiting (to let go of a database cursor, say).
        Returns whether the job was paused here."""
        await self.persist(position, errors)
        runner = self._runner
        runner.raise_if_stopping(self.rolling_back)
        if self.rolling_back or runner.gate.is_set():
            return False
        log.info("job %s paused at %s", self.job_id, self.progress.get("processed"))
        if on_pause is not None:
            await on_pause()
        await self.persist()
        await runner.gate.wait()
        runner.raise_if_stopping(self.rolling_back)
        log.info("job %s resumed", self.job_id)
        self._rate_since = (time.monotonic(), self.progress.get("processed", 0))
        return True

    async def checkpoint_rows(self, position: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        """checkpoint() for jobs that read rows, after fail_on_row_errors()."""
        await self.fail_on_row_errors(position, errors)
        await self.checkpoint(position, errors)

    async def fail_on_row_errors(self, position: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        """Applies the job's ``on_error`` / ``max_errors`` to a batch's row errors
        (already counted in ``progress["failed"]``): fails the job with the first
        one, after persisting the batch."""
        params = self.params
        fail_fast = params["on_error"] == "fail"
        if errors and (fail_fast or self.progress["failed"] > params["max_errors"]):
            await self.persist(position, errors)
            reason = "on_error=fail" if fail_fast else f"more than max_errors={params['max_errors']} rows failed"
            raise JobFailed(f"stopped at line {errors[0]['line']} ({reason}): {errors[0]['message']}")

    def stop_known(self) -> bool:
        """Whether this replica already knows the job must pause or stop, without
        asking the database: a request made here flips the runner at once, before
        its response is sent. Job code checks it before sending more work."""
        return self._runner.stop_known()

    async def terminate_self(self, reason: str) -> None:
        """The job ends itself as terminated (a streamed export whose client left)."""
        log.info("job %s terminating itself: %s", self.job_id, reason)
        try:
            doc = await self._runner.manager.repo.request(self.org_id, self.job_id, TERMINATE)
        except InvalidTransition:
            pass  # already terminating
        else:
            self._runner.apply(doc["state"], doc["rev"])
        self._runner.terminate_requested = True
        raise JobTerminated(reason)

    async def persist(self, position: dict[str, Any] | None = None, errors: list[dict[str, Any]] = ()) -> None:
        """Write progress, position and (the first MAX_ERRORS_KEPT) row errors, without
        waiting for anything; also learns the job's current state."""
        if position is not None:
            self.position = position
        room = max(0, MAX_ERRORS_KEPT - self._errors_kept)
        kept = list(errors[:room])
        self._errors_kept += len(kept)
        self._update_rates()
        runner = self._runner
        doc = await runner.manager.repo.save_progress(
            self.job_id, runner.manager.owner, runner.manager.lease_until(), self.progress, self.position, kept
        )
        if doc is None:
            runner.lose()
            raise JobStopped("another replica owns this job now")
        runner.apply(doc["state"], doc["rev"])

    def _update_rates(self) -> None:
        processed = self.progress.get("processed", 0)
        total = self.progress.get("total")
        if total:
            self.progress["percent"] = round(min(100.0, 100.0 * processed / total), 2)
        if self.rolling_back:
            return
        if not self._runner.gate.is_set():
            self.progress["rows_per_second"] = 0.0
            return
        since, at = self._rate_since
        elapsed = time.monotonic() - since
        if elapsed > 0:
            self.progress["rows_per_second"] = round((processed - at) / elapsed, 1)


class Runner:
    def __init__(self, manager: JobManager, job: dict[str, Any], kind: Kind, sink: Any = None) -> None:
        self.manager = manager
        # An attached runner writes into one HTTP response (a streamed export):
        # it cannot move to another replica or restart, so it is never handed
        # back or retried; if it must stop, the job ends terminated.
        self.sink = sink
        self.job_id: str = job["_id"]
        self.kind = kind
        self.job = job
        self.rev: int = job.get("rev", 0)
        self.gate = asyncio.Event()
        self.terminate_requested = job["state"] == JobState.TERMINATING.value
        self.stopping = False
        self.lost = False
        if job["state"] != JobState.PAUSED.value:
            self.gate.set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._main(), name=f"job-{self.job_id}")

    def apply(self, state: str, rev: int) -> None:
        """Bring the local gate in line with the job document. Revisions only grow,
        so a stale read can never undo a newer request."""
        if rev <= self.rev:
            return
        self.rev = rev
        if state == JobState.PAUSED.value:
            self.gate.clear()
        elif state == JobState.RUNNING.value:
            self.gate.set()
        elif state == JobState.TERMINATING.value:
            self.terminate_requested = True
            self.gate.set()

    def lose(self) -> None:
        """Another replica adopted the job (this one was too slow to renew its
        lease): stop at the next checkpoint without touching the job again."""
        self.lost = True
        self.gate.set()

    def stop(self) -> None:
        """Shutdown: leave at the next checkpoint and hand the job back."""
        self.stopping = True
        self.gate.set()

    def stop_known(self) -> bool:
        """Paused, or due to stop at the next checkpoint (see raise_if_stopping)."""
        return not self.gate.is_set() or self.terminate_requested or self.stopping or self.lost

    def raise_if_stopping(self, rolling_back: bool) -> None:
        if self.lost:
            raise JobStopped("another replica owns this job now")
        if self.stopping:
            raise JobStopped("shutting down")
        if self.terminate_requested and not rolling_back:
            raise JobTerminated()

    async def _main(self) -> None:
        ctx = JobContext(self, self.job)
        try:
            if self.terminate_requested:
                await self._rollback(ctx)
                return
            try:
                await self._retrying(ctx, self._run_to_completion)
            except JobTerminated:
                await self._rollback(ctx)
        except JobStopped as stop:
            log.info("job %s left this replica: %s", self.job_id, stop)
            if not self.lost:
                await asyncio.shield(self._hand_back(ctx, str(stop)))
        except asyncio.CancelledError:
            log.warning("job %s cancelled; releasing it for another replica", self.job_id)
            await asyncio.shield(self._hand_back(ctx, "cancelled"))
            raise
        except JobFailed as failure:
            await asyncio.shield(self._fail(ctx, str(failure)))
        except Exception as exc:  # a bug, or a database error that is not an outage
            log.exception("job %s crashed", self.job_id)
            await asyncio.shield(self._fail(ctx, f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            self.manager.runner_done(self)

    async def _hand_back(self, ctx: JobContext, reason: str) -> None:
        repo, owner = self.manager.repo, self.manager.owner
        if self.sink is None:
            await repo.release(self.job_id, owner)
            return
        await repo.transition(
            self.job_id,
            owner,
            [JobState.RUNNING, JobState.PAUSED, JobState.TERMINATING],
            JobState.TERMINATED,
            progress=ctx.progress,
            error=f"the download ended: {reason}",
        )

    async def _retrying(self, ctx: JobContext, step: Callable[[JobContext], Awaitable[None]]) -> None:
        """Runs ``step``; when the database goes away, waits with backoff and runs it
        again from the last checkpoint (inserts are idempotent, so the replayed
        batch is harmless) for up to DB_RETRY_SECONDS without progress."""
        budget = self.manager.settings.db_retry_seconds
        delay, failing_since, position = RETRY_FIRST_DELAY, None, ctx.position
        while True:
            try:
                await step(ctx)
                return
            except OUTAGE as exc:
                if self.sink is not None:
                    raise JobFailed(f"the database became unreachable during the download: {exc}") from exc
                now = time.monotonic()
                if ctx.position != position:  # progress since the last outage: a new one
                    failing_since, delay, position = None, RETRY_FIRST_DELAY, ctx.position
                failing_since = failing_since or now
                if now - failing_since >= budget:
                    raise JobFailed(
                        f"the database was unreachable for more than {budget:g} s (DB_RETRY_SECONDS): {exc}"
                    ) from exc
                log.warning("job %s: database unavailable (%s); retrying in %.1f s", self.job_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                self.raise_if_stopping(ctx.rolling_back)

    async def _run_to_completion(self, ctx: JobContext) -> None:
        await self.kind.run(ctx)
        await self._complete(ctx)

    async def _complete(self, ctx: JobContext) -> None:
        # A pause or terminate may land between the last batch and this write;
        # the guarded transition then fails and the next checkpoint honours it.
        while True:
            await ctx.checkpoint()
            done = await self.manager.repo.transition(
                self.job_id, self.manager.owner, [JobState.RUNNING], JobState.COMPLETED, progress=ctx.progress
            )
            if done is not None:
                log.info("job %s completed", self.job_id)
                await self._cleanup(ctx, JobState.COMPLETED)
                return

    async def _rollback(self, ctx: JobContext) -> None:
        ctx.rolling_back = True
        log.info("job %s terminating: rolling back", self.job_id)
        try:
            await self._retrying(ctx, self.kind.rollback)
        except JobFailed as failure:
            # A rollback is never abandoned: hand the job back, still terminating,
            # and whichever replica adopts it next continues the rollback.
            log.error("job %s: rollback interrupted: %s", self.job_id, failure)
            raise JobStopped(str(failure)) from failure
        await self.manager.repo.transition(
            self.job_id, self.manager.owner, [JobState.TERMINATING], JobState.TERMINATED, progress=ctx.progress
        )
        log.info("job %s terminated", self.job_id)
        self.manager.finished[(self.kind.name, JobState.TERMINATED.value)] += 1

    async def _fail(self, ctx: JobContext, message: str) -> None:
        log.warning("job %s failed: %s", self.job_id, message)
        try:
            await self._record_failure(ctx, message)
        except PyMongoError as exc:
            # The database is still away: the job stays running with a lease that
            # expires, and a replica adopts it once the database is back.
            log.error("job %s: could not record the failure (%s); it will be adopted later", self.job_id, exc)

    async def _record_failure(self, ctx: JobContext, message: str) -> None:
        failed = await self.manager.repo.transition(
            self.job_id,
            self.manager.owner,
            [JobState.RUNNING, JobState.PAUSED],
            JobState.FAILED,
            error=message,
            progress=ctx.progress,
        )
        if failed is not None:
            await self._cleanup(ctx, JobState.FAILED)
        else:
            # Terminated while failing: hand the job back so the rollback starts now.
            await self.manager.repo.release(self.job_id, self.manager.owner)

    async def _cleanup(self, ctx: JobContext, outcome: JobState) -> None:
        ctx.outcome = outcome
        self.manager.finished[(self.kind.name, outcome.value)] += 1
        try:
            await self.kind.cleanup(ctx)
        except Exception:
            log.exception("job %s: cleanup failed (nothing is lost; files may be left)", self.job_id)
