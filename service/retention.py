"""Nothing grows forever: finished jobs and their result files expire, and a
finished job can be deleted at once (DELETE /api/v1/jobs/{id}).

Which jobs may go: terminated and undone ones (their rollback left nothing), and completed
exports and teams jobs (the teams and users they created stay; only the job's
record and result file go). A completed import is kept: its record is what
describes its dataset (columns, types, row count) for exports, for as long as
its rows exist. A failed job is kept for FAILED_JOB_RETENTION_DAYS (it may be
retried, and its rows, before-images, upload and undo log wait for that);
after that the sweep requests its terminate, through the same guarded
transition as a user's, so its rollback removes what it wrote (and the job,
now terminated, expires like any other).

Each replica sweeps when it starts and then every SWEEP_SECONDS (an hour):

- export files of jobs that finished more than RESULT_RETENTION_DAYS ago;
- the undo window of completed imports and teams jobs that finished more than
  JOB_UNDO_DAYS ago: the job is marked as no longer undoable (with the
  reason an undo's 409 names), then a teams job's undo log is dropped;
- whole jobs that finished more than JOB_RETENTION_DAYS ago;
- failed jobs older than FAILED_JOB_RETENTION_DAYS: terminated;
- audit events older than AUDIT_RETENTION_DAYS (their ObjectId _id is their
  time, so the _id index serves the delete);
- uploads whose job does not exist (the request died between storing the file
  and creating the job) or is finished (completed or terminated: a crash came
  between the end and the job's cleanup); a failed job keeps its upload;
- GridFS chunks, in both buckets, without a files document (a writer killed
  mid-file), unless an export that is not finished still writes that file.

Uploads and orphan chunks are judged by when their file was started (the
ObjectId of the file, made before its first chunk), and only once that is
UPLOAD_GRACE_SECONDS ago: a live upload writes its chunks first and its files
document last, and its job is created after that, so the grace must be longer
than the longest upload (the default, 6 hours, is a 1 GiB upload at 50 KB/s).

Deletes are idempotent, so replicas sweeping at the same time do no harm; every
query is index-served (jobs by (state, finished_at), by _id and by
params.file_id; files and chunks by _id and files_id; audit events by _id)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from bson import ObjectId

from .audit import append
from .auth.identity import Identity
from .background import repeat, stop
from .errors import InvalidTransition, JobNotFound
from .jobs import undo
from .jobs.fence import attempt_job_id
from .jobs.kinds import KINDS
from .jobs.model import TERMINATE, JobState, utcnow
from .jobs.repo import JobRepo
from .settings import Settings
from .store.clock import DbClock
from .store.db import Database
from .store.files import Bucket
from .typedefs import DB_KEY, MANAGER_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)

SWEEP_CHUNK = 200
# How often each replica sweeps. Fixed, not a setting: every retention period is
# counted in days (UPLOAD_GRACE_SECONDS in hours), so an hour more or less
# before a sweep finds what expired changes nothing an operator could want,
# and a sweep's cost is the work it finds, not how often it looks.
SWEEP_SECONDS = 3600.0
COMPLETED, TERMINATED, FAILED = JobState.COMPLETED.value, JobState.TERMINATED.value, JobState.FAILED.value
UNDONE = JobState.UNDONE.value
# Finished jobs that may be deleted (see the module docstring): each kind says
# whether a completed job of its own may go.
DELETABLE = (
    {"state": TERMINATED},
    {"state": UNDONE},
    {"state": COMPLETED, "kind": {"$in": sorted(k.name for k in KINDS.values() if k.completed_deletable)}},
)
# A job in one of these states no longer needs its upload.
UPLOAD_DONE = frozenset({COMPLETED, TERMINATED, UNDONE})


def deletable(job: dict[str, Any]) -> bool:
    return job["state"] in (TERMINATED, UNDONE) or (job["state"] == COMPLETED and KINDS[job["kind"]].completed_deletable)


async def delete_job(db: Database, repo: JobRepo, job: dict[str, Any]) -> None:
    """Deletes a finished job, its progress document and what its kind keeps
    for it (a result file, an undo log). The job document goes first, in one
    write guarded by the state read: a request that changed the job meanwhile
    (an undo, a retry) wins, and nothing of the job is touched (409); a crash
    after it leaves only files, which the sweeps of orphans reclaim."""
    if not deletable(job):
        if job["state"] == COMPLETED:
            reason = "a completed import describes its dataset for as long as its rows exist"
        elif job["state"] == FAILED:
            reason = "a failed job may still hold rows; terminate it first, then delete it"
        else:
            reason = "only a finished job can be deleted; terminate it first"
        raise InvalidTransition(f"Cannot delete a job that is {job['state']}: {reason}.", state=job["state"])
    if not await repo.delete_finished(job):
        raise InvalidTransition("The job changed while it was being deleted; look at it again.", state=job["state"])
    await _delete_result(db, job)


async def _delete_result(db: Database, job: dict[str, Any]) -> None:
    delete = KINDS[job["kind"]].delete_result
    if delete is not None:
        await delete(db, job)


async def sweep(db: Database, settings: Settings, now: dt.datetime | None = None, repo: JobRepo | None = None) -> dict[str, int]:
    """One pass of every expiry; returns how many of each it removed."""
    now = now or utcnow()
    repo = repo or JobRepo(db.jobs, db.job_progress, DbClock(), settings.job_lease_seconds)
    done = {"results": 0, "undo_windows": 0, "jobs": 0, "failed": 0, "audit": 0, "uploads": 0, "orphans": 0, "attempts": 0}
    result_cutoff = now - dt.timedelta(days=settings.result_retention_days)
    while batch := await repo.expired_results(result_cutoff, SWEEP_CHUNK):
        for job in batch:
            await _delete_result(db, job)
            await repo.result_deleted(job["_id"], now)
            done["results"] += 1
    done["undo_windows"] = await undo.end_windows(db, repo, KINDS, settings.job_undo_days, now, SWEEP_CHUNK)
    job_cutoff = now - dt.timedelta(days=settings.job_retention_days)
    for which in DELETABLE:
        while batch := await repo.finished_before(which, job_cutoff, SWEEP_CHUNK):
            for job in batch:
                try:
                    await delete_job(db, repo, job)
                except InvalidTransition:  # undone or retried meanwhile: no longer this query's
                    continue
                done["jobs"] += 1
    done["failed"] = await _terminate_failed(db, repo, now - dt.timedelta(days=settings.failed_job_retention_days))
    audit_cutoff = ObjectId.from_datetime(now - dt.timedelta(days=settings.audit_retention_days))
    done["audit"] = (await db.audit.delete_many({"_id": {"$lt": audit_cutoff}})).deleted_count
    started_before = ObjectId.from_datetime(now - dt.timedelta(seconds=settings.upload_grace_seconds))
    done["uploads"] = await _sweep_uploads(db.uploads, repo, started_before)
    for bucket in (db.uploads, db.exports):
        done["orphans"] += await _sweep_orphan_chunks(bucket, repo, started_before, exports=bucket is db.exports)
    done["attempts"] = await _sweep_attempt_files(db.exports, repo, str(started_before))
    if any(done.values()):
        log.info("retention: removed %s", ", ".join(f"{n} {what}" for what, n in done.items() if n))
    return done


async def _terminate_failed(db: Database, repo: JobRepo, cutoff: dt.datetime) -> int:
    """Requests the terminate of every job that failed before ``cutoff``."""
    count = 0
    while batch := await repo.finished_before({"state": FAILED}, cutoff, SWEEP_CHUNK):
        for job in batch:
            try:
                result = await repo.request(job["org_id"], job["_id"], TERMINATE)
            except (InvalidTransition, JobNotFound):  # retried or terminated meanwhile
                continue
            if result.changed:
                count += 1
                who = Identity(job["org_id"], "system:retention", "retention sweep", None, "system")
                await append(
                    db,
                    who,
                    "job.terminate",
                    job_id=job["_id"],
                    state_before=result.before,
                    state_after=result.job["state"],
                    reason="failed longer than FAILED_JOB_RETENTION_DAYS",
                )
    return count


async def _sweep_uploads(bucket: Bucket, repo: JobRepo, started_before: ObjectId) -> int:
    count, after = 0, None
    while files := await bucket.started_before(started_before, after, SWEEP_CHUNK):
        after = files[-1]["_id"]
        job_ids = [(f.get("metadata") or {}).get("job_id") for f in files]
        states = await repo.states([j for j in job_ids if j])
        for file, job_id in zip(files, job_ids):
            state = states.get(job_id) if job_id else None
            if state is None or state in UPLOAD_DONE:
                await bucket.delete(file["_id"])
                count += 1
    return count


async def _sweep_orphan_chunks(bucket: Bucket, repo: JobRepo, started_before: ObjectId, exports: bool) -> int:
    count, after = 0, None
    while True:
        orphans, after = await bucket.orphan_chunks(started_before, after, SWEEP_CHUNK)
        if exports and orphans:
            # An export's file is written over its whole run, pauses included:
            # an attempt's file is named "<job>:<epoch>" (an older export's by
            # its params.file_id), and is kept while its job may still write it.
            owners = {o: attempt_job_id(o) for o in orphans}
            states = await repo.states([j for j in owners.values() if j])
            named = await repo.file_states([str(o) for o in orphans if not owners[o]])
            orphans = [
                o
                for o in orphans
                if (states.get(owner) if (owner := owners[o]) else named.get(str(o), COMPLETED)) in (*UPLOAD_DONE, FAILED, None)
            ]
        for file_id in orphans:
            await bucket.delete(file_id)
            count += 1
        if after is None:
            return count


async def _sweep_attempt_files(bucket: Bucket, repo: JobRepo, started_before: str) -> int:
    """Export attempts' files ("<job>:<epoch>", whole or chunks only) of jobs
    started before the grace that no longer exist, or that ended without the
    file as their result. A failed export's files stay: its retry continues
    from its last durable attempt."""
    count, after = 0, None
    while ids := await bucket.named_before(started_before, after, SWEEP_CHUNK):
        after = ids[-1]
        owners = {i: attempt_job_id(i) for i in ids}
        jobs = await repo.results([j for j in owners.values() if j])
        for file_id, owner in owners.items():
            job = jobs.get(owner) if owner else None
            if owner and (job is None or (job["state"] in UPLOAD_DONE and job["file_id"] != file_id)):
                await bucket.delete(file_id)
                count += 1
    return count


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx, after the database's: sweeps in the background."""
    db, settings, repo = app[DB_KEY], app[SETTINGS_KEY], app[MANAGER_KEY].repo

    def failed(exc: Exception) -> None:  # an outage: the next sweep retries
        log.warning("retention sweep failed: %s", exc)

    task = asyncio.create_task(repeat(lambda: sweep(db, settings, repo=repo), SWEEP_SECONDS, failed), name="retention-sweeper")
    yield
    await stop(task)
