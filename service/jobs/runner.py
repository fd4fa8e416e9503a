"""A Runner is one job running on this replica: an asyncio.Task plus an
asyncio.Event gate. Job code calls ``ctx.checkpoint()`` between batches; that
is the only place where pause, resume, terminate and shutdown take effect.
Job code writes only through the fenced handles its context gives it
(service/jobs/fence.py): each write is let out only while this replica's
lease is valid and carries a deadline before the lease can expire."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pymongo
from bson import ObjectId
from pymongo.errors import ConnectionFailure, PyMongoError

from ..background import end_if_cancelled
from ..datasets import import_ids
from ..errors import InvalidTransition, JobFailed, JobStopped, JobTerminated
from ..logs import bind_job, runner_state
from .fence import PROBE_SECONDS, Fence, Profiles, ReadOnly, Records, ResultFiles, Stored, Teams, Upload
from .params import DatasetParams, Params, RawParams, RowParams, UploadParams
from .repo import MAX_ERRORS_KEPT, Claim
from .reservations import RECORD_BYTES, RESULT_BYTES, UPLOAD_BYTES
from .states import ACTIVE, COMPLETE, DOWNLOAD_ENDED, FAIL, PAUSE_SELF, PAUSED, ROLLBACK_END, ROLLING_BACK, TERMINATE, JobState

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store.db import Database
    from .manager import JobManager
    from .repo import JobRepo

P = TypeVar("P", bound=Params)
log = logging.getLogger(__name__)

RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 5.0
# A data write is sent only with at least this share of the usable lease
# (lease - margin) left, so it has time to finish; otherwise the runner waits
# for the next renewal (every JOB_POLL_SECONDS).
MIN_WRITE_SHARE = 0.5
ROLLBACK_FIRST_BACKOFF = 1.0
# Progress fields that move with time, not with work.
RATES = frozenset({"rows_per_second", "percent"})
ROLLBACK_MAX_BACKOFF = 300.0


class LeaseUnavailable(Exception):
    """The lease could not be renewed in time: the database is probably away."""


class InjectedFault(RuntimeError):
    """A failure the test build asked for (COLLECT_JOBS_FAULTS)."""


def is_outage(exc: BaseException) -> bool:
    """The database is not reachable right now (or did not answer in time), as
    opposed to "the database refused this". AutoReconnect, NetworkTimeout and
    ServerSelectionTimeoutError are ConnectionFailures; a write that ran out of
    its deadline (the lease's) is a timeout."""
    if isinstance(exc, (ConnectionFailure, LeaseUnavailable)):
        return True
    return isinstance(exc, PyMongoError) and exc.timeout


@dataclass(frozen=True)
class Kind:
    """The one object a job kind gives the engine; nothing outside the kind's
    module asks ``if kind == ...``.

    - ``params`` is the class of its parameters (service/jobs/params.py),
      parsed once from the stored job; job code reads ``ctx.params_as(cls)``;
    - ``run`` continues from ``ctx.position`` (None at the start);
    - ``rollback`` removes everything the job wrote and must itself be safe to
      run again from the start (a terminate, on any replica);
    - ``cleanup`` frees what a completed job no longer needs (its upload, its
      undo log); it runs once the job is completed, never otherwise;
    - ``org_limit`` is how many of an org's jobs of this kind may hold an
      admission slot at once (None: only the replica's limit applies);
    - ``completed_deletable`` says whether a completed job may be deleted (a
      completed import may not: it describes its dataset's rows);
    - ``delete_result`` deletes a finished job's stored result, if it has one;
    - ``undoable`` says whether a completed job may be undone (POST
      /jobs/{id}/undo: the same ``rollback``, ending ``undone``); such a kind's
      ``cleanup`` keeps what its rollback needs, ``undo_preview`` says what an
      undo would remove (its dry run) and ``drop_undo`` frees what the
      rollback would have needed once the undo window (JOB_UNDO_DAYS) is over.
    """

    name: str
    run: Callable[[JobContext], Awaitable[None]]
    rollback: Callable[[JobContext], Awaitable[None]]
    cleanup: Callable[[JobContext], Awaitable[None]]
    org_limit: Callable[[Settings], int | None] = lambda settings: None
    completed_deletable: bool = False
    delete_result: Callable[[Database, dict[str, Any]], Awaitable[None]] | None = None
    undoable: bool = False
    undo_preview: Callable[[Database, JobRepo, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
    drop_undo: Callable[[Database, dict[str, Any]], Awaitable[None]] | None = None
    params: type[Params] = RawParams


class JobContext:
    """What job code sees: the job document, checkpoint(), and fenced handles
    for everything it writes; no collection it could write unfenced."""

    def __init__(self, runner: Runner, job: dict[str, Any]) -> None:
        self._runner = runner
        self.job = job
        self.job_id: str = job["_id"]
        self.org_id: str = job["org_id"]
        self._params: Params | None = None
        self._db = runner.manager.db
        self.settings = runner.manager.settings
        # Writes go only through the handles below, each fenced by the lease.
        self.fence = Fence(runner)
        self.decimal128 = self._db.decimal128
        self.workers = runner.manager.workers  # where an import's batches are built (JOB_WORKERS)
        self.progress: dict[str, Any] = dict(job.get("progress") or {})
        self.position: dict[str, Any] | None = job.get("checkpoint")
        self.sink = runner.sink
        self.outcome: JobState | None = None
        # Fields the transition to completed sets (an export's result file).
        self.completion: dict[str, Any] = {}
        self.rolling_back = False
        self._errors_kept = len(job.get("errors") or [])
        self._unsaved_errors: list[dict[str, Any]] = []
        self._failure: JobFailed | None = None  # decided by fail_on_row_errors()
        self._rate_since = (time.monotonic(), self.progress.get("processed", 0))

    # -- what job code reads and writes ------------------------------------------

    @property
    def params(self) -> Params:
        """The job's parameters, parsed once, when first read (inside the job's
        run: a stored job that does not parse fails as an internal error
        instead of crashing every replica that claims it)."""
        if self._params is None:
            self._params = self._runner.kind.params.from_doc(self.job.get("params") or {})
        return self._params

    def params_as(self, cls: type[P]) -> P:
        """The job's parameters as its kind's class (or a class it extends)."""
        if not isinstance(self.params, cls):
            raise TypeError(f"a {type(self.params).__name__} job has no {cls.__name__}")
        return self.params

    @functools.cached_property
    def records(self) -> Records:
        """The job's own records (an import's rows)."""
        return Records(self._db.records, self.fence, self.org_id, self.params_as(DatasetParams).dataset, self.job_id)

    @functools.cached_property
    def all_records(self) -> ReadOnly:
        """Every record, to read (an export reads its org's imports)."""
        return ReadOnly(self._db.records)

    @functools.cached_property
    def upload(self) -> Upload:
        reservations = self._runner.manager.reservations
        return Upload(
            self._db.uploads,
            self.fence,
            ObjectId(self.params_as(UploadParams).file_id),
            lambda: reservations.release(self.org_id, UPLOAD_BYTES, self.job_id),
        )

    @functools.cached_property
    def stored_records(self) -> Stored:
        """The job's share of MAX_RECORD_BYTES_PER_ORG (an import's rows, as CSV bytes)."""
        return self._stored(RECORD_BYTES, self.settings.max_record_bytes_per_org, "MAX_RECORD_BYTES_PER_ORG", "imported records")

    @functools.cached_property
    def stored_results(self) -> Stored:
        """The job's share of MAX_RESULT_BYTES_PER_ORG (an export's stored CSV)."""
        return self._stored(
            RESULT_BYTES, self.settings.max_result_bytes_per_org, "MAX_RESULT_BYTES_PER_ORG", "stored export results"
        )

    def _stored(self, key: str, limit: int, setting: str, what: str) -> Stored:
        return Stored(self._runner.manager.reservations, self.fence, self.org_id, key, self.job_id, limit, setting, what)

    @functools.cached_property
    def results(self) -> ResultFiles:
        """This attempt's result file (an export), and the job's others."""
        return ResultFiles(self._db.exports, self.fence, self.org_id, self.job_id, self._runner.epoch)

    @functools.cached_property
    def teams(self) -> Teams:
        return Teams(self._db.teams, self._db.users, self._db.undo, self.fence, self.job_id)

    @functools.cached_property
    def profiles(self) -> Profiles:
        return Profiles(self._db.profiles, self.fence, self.org_id, self.params_as(DatasetParams).dataset, self.job_id)

    async def dataset_imports(self, dataset: str, states: tuple[JobState, ...], as_of: dt.datetime | None) -> list[str]:
        """The ids of a dataset's imports in ``states`` that had finished by
        ``as_of``, oldest first, to read (an export's)."""
        return await import_ids(self._runner.manager.repo, self.org_id, dataset, states, as_of)

    async def states_of(self, job_ids: list[str]) -> dict[str, str]:
        """The states of other jobs (an export's imports), to read."""
        return await self._runner.manager.repo.states(job_ids)

    def inject_fault(self, point: str) -> None:
        """Fails here when the test build names this point (COLLECT_JOBS_FAULTS=kind.point)."""
        if f"{self._runner.kind.name}.{point}" in self.settings.faults:
            raise InjectedFault(f"injected fault at {self._runner.kind.name}.{point}")

    async def checkpoint(
        self,
        position: dict[str, Any] | None = None,
        errors: Sequence[dict[str, Any]] = (),
        on_pause: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Persist progress and the resumable position, then stop if terminated
        or shutting down, or stop here while a pause is requested. Call only with
        nothing in flight: the job is shown ``paused`` from here on.
        ``on_pause`` runs before that (to let go of a database cursor, say).
        Returns whether the job was paused here."""
        await self.persist(position, errors)
        runner = self._runner
        runner.raise_if_stopping(self.rolling_back)
        if self.rolling_back or runner.gate.is_set():
            return False
        if on_pause is not None:
            await on_pause()
        log.info("job %s pausing at %s", self.job_id, self.progress.get("processed"))
        await self.fence.settle()  # a write that may still land is landed first
        await self.persist()
        await runner.mark_paused()
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
        one, after persisting the batch. Such a failure is the file's, so a retry
        cannot cure it."""
        params = self.params_as(RowParams)
        if errors and (params.fail_fast or self.progress["failed"] > params.max_errors):
            reason = "on_error=fail" if params.fail_fast else f"more than max_errors={params.max_errors} rows failed"
            # Kept until it is raised: if the save below loses its answer, the
            # step is not run again past the bad row; the next run raises it
            # (raise_pending_failure) once the batch is saved.
            self._failure = JobFailed(f"stopped at line {errors[0]['line']} ({reason}): {errors[0]['message']}", retryable=False)
            await self.persist(position, errors)
            raise self._failure

    async def raise_pending_failure(self) -> None:
        """Before a step runs again: a row failure decided by the run before,
        whose batch's save lost its answer, is saved and raised now."""
        if self._failure is not None and not self.rolling_back:
            await self.persist()
            raise self._failure

    def stop_known(self) -> bool:
        """Whether this replica already knows the job must pause or stop, without
        asking the database: a request made here flips the runner at once, before
        its response is sent. Job code checks it before sending more work."""
        return self._runner.stop_known()

    async def terminate_self(self, reason: str) -> None:
        """The job ends itself as terminated (a streamed export whose client left)."""
        log.info("job %s terminating itself: %s", self.job_id, reason)
        try:
            result = await self._runner.manager.repo.request(self.org_id, self.job_id, TERMINATE)
        except InvalidTransition:
            pass
        else:
            self._runner.apply(result.job)
        self._runner.terminate_requested = True
        self._runner.ended_because = reason
        raise JobTerminated(reason)

    async def pause_self(self, reason: dict[str, Any]) -> None:
        """The job pauses itself (the import guard found something), with nothing
        in flight: the owner's guarded running -> pausing transition with
        ``reason`` as the job's ``pause_reason``, then a checkpoint that marks it
        paused and waits like any pause. A resume clears the reason; a terminate
        requested meanwhile wins."""
        runner = self._runner
        log.info("job %s pausing itself", self.job_id)
        doc = await runner.manager.repo.transition(self.job_id, runner.epoch, PAUSE_SELF, pause_reason=reason)
        if doc is not None:
            runner.apply(doc)
        else:
            await runner.refresh()
        await self.checkpoint()

    async def persist(self, position: dict[str, Any] | None = None, errors: Sequence[dict[str, Any]] = ()) -> None:
        """Write progress, position and (the first MAX_ERRORS_KEPT) row errors and
        extend the lease, without waiting for anything; also learns the job's
        current state."""
        if position is not None:
            self.position = position
        room = max(0, MAX_ERRORS_KEPT - self._errors_kept - len(self._unsaved_errors))
        # A save whose answer was lost leaves its batch's errors unsaved: the
        # step goes on from the position it tried to save (its writes landed),
        # so the next save carries them. Errors are added as a set: one that
        # did land is not added twice.
        kept = self._unsaved_errors + list(errors[:room])
        self._unsaved_errors = kept
        self._update_rates()
        runner = self._runner
        runner.manager.metrics.progress(self)
        sent = time.monotonic()
        doc = await runner.manager.repo.save_progress(self.job_id, runner.epoch, self.progress, self.position, kept)
        if doc is None:
            runner.lose()
            raise JobStopped("another replica owns this job now")
        self._unsaved_errors = []
        self._errors_kept += len(kept)
        runner.lease_renewed(sent)
        runner.apply(doc)

    def mark(self) -> tuple[Any, ...]:
        """Where the job stands (its position and counters, not its rates): two
        marks differ when the job made progress in between."""
        counters = sorted((k, repr(v)) for k, v in self.progress.items() if k not in RATES)
        return (repr(self.position), *counters)

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
        if processed < at:  # the job started over (an export adopted after a crash)
            self._rate_since = since, at = time.monotonic(), processed
        elapsed = time.monotonic() - since
        if elapsed > 0:
            self.progress["rows_per_second"] = round((processed - at) / elapsed, 1)


class Runner:
    def __init__(self, manager: JobManager, claim: Claim, kind: Kind, sink: Any = None, claimed_at: float = 0.0) -> None:
        self.manager = manager
        # An attached runner writes into one HTTP response (a streamed export):
        # it cannot move to another replica or restart, so it is never handed
        # back or retried; if it must stop, the job ends terminated.
        self.sink = sink
        job = claim.job
        self.job_id: str = job["_id"]
        self.epoch = claim.epoch
        self.kind = kind
        self.job = job
        self.rev: int = job.get("rev", 0)
        self.state = JobState(job["state"])
        self.gate = asyncio.Event()
        self.terminate_requested = self.state in ROLLING_BACK
        # Why the job ended itself (a streamed download's client left), shown as its error.
        self.ended_because: str | None = None
        self.stopping = False
        self.lost = False
        self.released = False
        # Completed: only its cleanup is left, which deletes what only this
        # job used (its upload, its undo log); no lease is held or needed.
        self.finished = False
        self._renewed = asyncio.Event()
        self.valid_until = 0.0
        self.lease_renewed(claimed_at or time.monotonic())
        if self.state not in (JobState.PAUSING, JobState.PAUSED):
            self.gate.set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._main(), name=f"job-{self.job_id}")

    @property
    def paused(self) -> bool:
        """Stopped at a checkpoint: holds no process slot (its org's slot stays)."""
        return self.state is JobState.PAUSED and not self.gate.is_set()

    # -- what this runner knows of its job -------------------------------------

    def apply(self, doc: dict[str, Any]) -> None:
        """Bring the local gate in line with the job document. Revisions only grow,
        so a stale read can never undo a newer request. A document at another
        epoch, or in a state no runner is for, means the job is no longer ours."""
        if doc.get("epoch", self.epoch) != self.epoch:
            self.lose()
            return
        rev = doc.get("rev", 0)
        if rev <= self.rev:
            return
        state = JobState(doc["state"])
        if state not in ACTIVE:
            log.warning("job %s is %s under its runner; giving it up", self.job_id, state.value)
            self.lose()
            return
        self.rev, self.state = rev, state
        if state in (JobState.PAUSING, JobState.PAUSED):
            self.gate.clear()
        elif state is JobState.RUNNING:
            self.gate.set()
        elif state in ROLLING_BACK:
            self.terminate_requested = True
            self.gate.set()

    async def refresh(self) -> None:
        """Read the job's state again (after a transition of ours did not apply)."""
        doc = await self.manager.repo.control_state(self.job_id)
        if doc is None:
            self.lose()
        else:
            self.rev = min(self.rev, doc.get("rev", 0) - 1)
            self.apply(doc)

    async def mark_paused(self) -> None:
        """pausing -> paused, written once the job has stopped with nothing in flight."""
        doc = await self.manager.repo.transition(self.job_id, self.epoch, PAUSED)
        if doc is not None:
            self.apply(doc)
            log.info("job %s paused", self.job_id)
        else:
            await self.refresh()  # resumed, terminated or lost meanwhile

    def lease_renewed(self, sent: float) -> None:
        """A renewal sent at ``sent`` (monotonic) was acknowledged: the lease is
        good, by this replica's own clock, until ``sent`` + lease - margin."""
        settings = self.manager.settings
        self.valid_until = max(self.valid_until, sent + settings.job_lease_seconds - settings.lease_margin_seconds)
        self._renewed.set()

    async def lease_left(self) -> float:
        """Seconds of valid lease left for a data write, waiting for a renewal
        when too little is; LeaseUnavailable when none comes within a lease."""
        settings = self.manager.settings
        if self.finished:
            return settings.db_timeout_seconds
        give_up = time.monotonic() + settings.job_lease_seconds
        enough = MIN_WRITE_SHARE * (settings.job_lease_seconds - settings.lease_margin_seconds)
        while True:
            if self.lost:
                raise JobStopped("another replica owns this job now")
            left = self.valid_until - time.monotonic()
            if left >= enough:
                return left
            wait = give_up - time.monotonic()
            if wait <= 0:
                raise LeaseUnavailable("the job's lease could not be renewed")
            self._renewed.clear()
            self.manager.wake()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, 1.0)):
                    await self._renewed.wait()

    async def reachable(self) -> bool:
        """Whether the database answers a ping now: a slow write is not an outage."""
        try:
            with pymongo.timeout(PROBE_SECONDS):
                await self.manager.db.db.command("ping")
        except PyMongoError:
            return False
        return True

    def lose(self) -> None:
        """Another replica owns the job now (this one was too slow to renew its
        lease), or it is no longer a runner's: stop at the next checkpoint
        without touching the job again."""
        self.lost = True
        self.gate.set()
        self._renewed.set()

    def stop(self) -> None:
        """Shutdown: leave at the next checkpoint and hand the job back."""
        self.stopping = True
        self.gate.set()

    def stop_known(self) -> bool:
        """Pause requested, or due to stop at the next checkpoint (see raise_if_stopping)."""
        return not self.gate.is_set() or self.terminate_requested or self.stopping or self.lost

    def raise_if_stopping(self, rolling_back: bool) -> None:
        end_if_cancelled()  # a cancel PyMongo swallowed still stops the job here
        if self.lost:
            raise JobStopped("another replica owns this job now")
        if self.stopping:
            raise JobStopped("shutting down")
        if self.terminate_requested and not rolling_back:
            raise JobTerminated()

    # -- the job's life ----------------------------------------------------------

    async def _main(self) -> None:
        ctx = JobContext(self, self.job)
        bind_job(self.job, self.kind.name, lambda: runner_state(self, ctx))
        try:
            if self.terminate_requested:
                await self._rollback(ctx)
                return
            try:
                if not self.gate.is_set():
                    await ctx.checkpoint()  # adopted while pausing: nothing in flight yet
                await self._retrying(ctx, self._run_to_completion)
            except JobTerminated:
                await self._rollback(ctx)
        except JobStopped as stop:
            log.info("job %s left this replica: %s", self.job_id, stop)
            if not self.released:
                await asyncio.shield(self._hand_back(ctx, str(stop)))
        except asyncio.CancelledError:
            log.warning("job %s cancelled; releasing it for another replica", self.job_id)
            if not self.released:
                await asyncio.shield(self._hand_back(ctx, "cancelled"))
            raise
        except JobFailed as failure:
            await asyncio.shield(self._fail(ctx, str(failure), failure.retryable))
        except Exception as exc:  # a bug, or a database error that is not an outage
            try:
                await self._still_ours()  # a lost job's files may be gone: not a crash of ours
            except JobStopped as stop:
                log.info("job %s left this replica: %s (after %s: %s)", self.job_id, stop, type(exc).__name__, exc)
                return
            # The job's error is shown to every viewer of the org: a plain message
            # and an id; what went wrong goes to the log line with that id.
            error_id = secrets.token_hex(8)
            log.exception("job %s crashed (error id %s)", self.job_id, error_id, extra={"error_id": error_id})
            await asyncio.shield(
                self._fail(ctx, f"an internal error stopped the job (error id {error_id}); retry it, or report the id", True)
            )
        finally:
            self.manager.runner_done(self)

    async def _hand_back(self, ctx: JobContext, reason: str) -> None:
        """Releases the lease so another replica may claim the job at once. Fenced
        by the epoch: a runner that lost the job to another replica releases
        nothing; one whose job left the runner states frees its lease now
        rather than when it expires."""
        repo = self.manager.repo
        try:
            if self.sink is None or self.lost:
                await repo.release(self.job_id, self.epoch)
                return
            await repo.transition(
                self.job_id,
                self.epoch,
                DOWNLOAD_ENDED,
                progress=ctx.progress,
                error=f"the download ended: {reason}",
            )
        except PyMongoError as exc:
            # The lease expires by itself and another replica adopts the job.
            log.warning("job %s: could not hand the job back (%s); its lease will expire", self.job_id, exc)

    async def _retrying(self, ctx: JobContext, step: Callable[[JobContext], Awaitable[None]]) -> None:
        """Runs ``step``; when a database call fails for want of the database
        (it went away, or did not answer in time), waits with backoff and runs
        it again from the last checkpoint (writes are idempotent, so a replayed
        unit is harmless). Any progress in between starts the clock again; it
        gives up after DB_RETRY_SECONDS without progress, saying whether the
        database could not be reached (a ``ping`` failed) or answered but too
        slowly for even the smallest write."""
        budget = self.manager.settings.db_retry_seconds
        delay, failing_since, mark = RETRY_FIRST_DELAY, None, ctx.mark()
        while True:
            try:
                # What the last run left in doubt lands first, before this run
                # writes anything after it (Fence.settle).
                await ctx.fence.settle()
                await ctx.raise_pending_failure()
                await step(ctx)
                return
            except Exception as exc:
                if not is_outage(exc):
                    raise
                reachable = await self.reachable()
                if self.sink is not None:
                    what = "too slow" if reachable else "unreachable"
                    raise JobFailed(f"the database was {what} during the download; start the download again") from exc
                now = time.monotonic()
                if ctx.mark() != mark:  # progress since the last failure: a new episode
                    failing_since, delay, mark = None, RETRY_FIRST_DELAY, ctx.mark()
                failing_since = failing_since or now
                if now - failing_since >= budget:
                    why = (
                        "answered, but too slowly for even the smallest write to fit the job's lease"
                        if reachable
                        else "could not be reached"
                    )
                    raise JobFailed(
                        f"for more than {budget:g} s (DB_RETRY_SECONDS) the database {why}; "
                        "retry the job once it is back: it continues from its last checkpoint"
                    ) from exc
                log.warning(
                    "job %s: database %s (%s); retrying in %.1f s",
                    self.job_id,
                    "slow" if reachable else "unreachable",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                await self._still_ours()
                self.raise_if_stopping(ctx.rolling_back)

    async def _still_ours(self) -> None:
        """Before running again after an error: is the job still this runner's?
        A replica that stalled past its lease finds here that another took it."""
        with contextlib.suppress(PyMongoError):
            await self.refresh()
        if self.lost:
            raise JobStopped("another replica owns this job now")

    async def _run_to_completion(self, ctx: JobContext) -> None:
        await self.kind.run(ctx)
        await self._complete(ctx)

    async def _complete(self, ctx: JobContext) -> None:
        # A pause or terminate may land between the last batch and this write;
        # the guarded transition then fails, and the state read back decides:
        # the next checkpoint pauses or stops, and a job that is no longer ours
        # (any other state or epoch) makes it raise. It cannot loop.
        while True:
            await ctx.checkpoint()
            # An undoable kind's completion says that what an undo needs is kept.
            undo: dict[str, Any] = {"undoable": True} if self.kind.undoable else {}
            done = await self.manager.repo.transition(
                self.job_id, self.epoch, COMPLETE, progress=ctx.progress, **undo, **ctx.completion
            )
            if done is not None:
                self.rev = done["rev"]  # our own final write: later reads of it change nothing
                self.finished = True
                log.info("job %s completed", self.job_id)
                await self._cleanup(ctx, JobState.COMPLETED)
                return
            await self.refresh()

    async def _rollback(self, ctx: JobContext) -> None:
        ctx.rolling_back = True
        self.manager.metrics.rollback_started(ctx)
        log.info("job %s terminating: rolling back", self.job_id)
        before = ctx.mark()

        try:
            # _retrying settles first: a write of the run that may still land
            # (an insert that timed out) lands before the rollback deletes.
            await self._retrying(ctx, self.kind.rollback)
        except (JobStopped, asyncio.CancelledError):
            raise
        except Exception as exc:
            # A rollback is never abandoned: it backs off and whichever replica
            # claims it after the backoff continues it.
            await asyncio.shield(self._rollback_failed(ctx, exc, progressed=ctx.mark() != before))
            self.released = True  # with a backoff time: nothing more to write
            raise JobStopped(f"rollback failed: {exc}") from exc
        repo = self.manager.repo
        if ctx.job.get("rollback"):
            await repo.save_rollback(self.job_id, self.epoch, {})
        end = ROLLBACK_END.get(self.state, ROLLBACK_END[JobState.TERMINATING])
        reason: dict[str, Any] = {"error": f"the download ended: {self.ended_because}"} if self.ended_because else {}
        done = await repo.transition(self.job_id, self.epoch, end, progress=ctx.progress, **reason)
        if done is None:
            self.lose()
            raise JobStopped("another replica owns this job now")
        self.rev = done["rev"]
        log.info("job %s %s", self.job_id, end.target.value)
        ctx.outcome = end.target
        self.manager.metrics.job_finished(self.kind.name, end.target.value, ctx)

    async def _rollback_failed(self, ctx: JobContext, exc: BaseException, progressed: bool) -> None:
        """Records why and hands the rollback back for any replica to continue.
        A rollback that removed anything in this attempt is making progress: it
        is not failing, and the next attempt may start at once. Only attempts
        that moved nothing back off (exponentially, across replicas: the lease
        is released with a time before which nobody claims it) and run the
        give-up clock, from the first of them: after ROLLBACK_GIVE_UP_SECONDS
        without progress the job stops holding its org's slot."""
        manager, settings = self.manager, self.manager.settings
        info = dict(ctx.job.get("rollback") or {})
        now = manager.clock.now()
        stalls = 0 if progressed else info.get("stalls", 0) + 1
        failing_since = None if progressed else info.get("failing_since") or now
        info.update(
            error=f"{type(exc).__name__}: {exc}",
            attempts=info.get("attempts", 0) + 1,
            stalls=stalls,
            failing_since=failing_since,
            next_at=manager.clock.after(min(ROLLBACK_MAX_BACKOFF, ROLLBACK_FIRST_BACKOFF * 2 ** (stalls - 1)))
            if stalls
            else None,
        )
        give_up = failing_since is not None and (now - failing_since).total_seconds() >= settings.rollback_give_up_seconds
        log.error(
            "job %s: rollback attempt %d ended (%s); %s",
            self.job_id,
            info["attempts"],
            exc,
            "it progressed: next attempt at once" if progressed else f"{stalls} without progress",
        )
        manager.metrics.rollback_failed(self.kind.name)
        try:
            await manager.repo.save_rollback(self.job_id, self.epoch, info)
            await manager.repo.release(
                self.job_id, self.epoch, not_before=info["next_at"], **({"slot_released": True} if give_up else {})
            )
        except PyMongoError as write_error:
            log.error("job %s: could not record the rollback failure (%s)", self.job_id, write_error)

    async def _fail(self, ctx: JobContext, message: str, retryable: bool) -> None:
        """Records the failure, waiting for the database as long as it takes: a
        job whose database went away ends ``failed`` once it is back, with its
        upload and checkpoint kept for a retry."""
        log.warning("job %s failed: %s", self.job_id, message)
        # A streamed download cannot be retried: its client has gone with it.
        retryable = retryable and self.sink is None
        delay = RETRY_FIRST_DELAY
        while not (self.lost or self.stopping):
            try:
                await self._record_failure(ctx, message, retryable)
                return
            except PyMongoError as exc:
                log.warning("job %s: cannot record the failure yet (%s); retrying in %.1f s", self.job_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)

    async def _record_failure(self, ctx: JobContext, message: str, retryable: bool) -> None:
        failed = await self.manager.repo.transition(
            self.job_id,
            self.epoch,
            FAIL,
            error=message,
            retryable=retryable,
            progress=ctx.progress,
            # The counts run up to the last batch that landed, which may be past
            # the last checkpoint written (the outage may have cut that write
            # off): a retry resumes from here, so it neither skips nor counts a
            # batch twice.
            checkpoint=ctx.position,
        )
        if failed is not None:
            self.rev = failed["rev"]
            ctx.outcome = JobState.FAILED
            self.manager.metrics.job_finished(self.kind.name, JobState.FAILED.value, ctx)
            return
        await self.refresh()
        if not self.lost:
            # Terminated while failing: hand it back so the rollback starts now.
            await self.manager.repo.release(self.job_id, self.epoch)
            self.manager.wake()

    async def _cleanup(self, ctx: JobContext, outcome: JobState) -> None:
        ctx.outcome = outcome
        self.manager.metrics.job_finished(self.kind.name, outcome.value, ctx)
        try:
            await self.kind.cleanup(ctx)
        except Exception:
            log.exception("job %s: cleanup failed (nothing is lost; files may be left)", self.job_id)
