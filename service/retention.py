"""Nothing grows forever: finished jobs and their result files expire, and a
finished job can be deleted at once (DELETE /api/v1/jobs/{id}).

Which jobs may go: terminated ones (their rollback left nothing), and completed
exports and teams jobs (the teams and users they created stay; only the job's
record and result file go). A completed import is kept: its record is what
describes its dataset (columns, types, row count) for exports, for as long as
its rows exist. A failed job is kept too: its rows or before-images are still
in the database, and terminate is how they go (the job is then terminated,
and may be deleted).

Each replica sweeps every RETENTION_SWEEP_SECONDS: export files of jobs that
finished more than RESULT_RETENTION_DAYS ago, then whole jobs that finished
more than JOB_RETENTION_DAYS ago. Deletes are idempotent, so replicas sweeping
at the same time do no harm; every query is served by the jobs index
(state, finished_at)."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from bson import ObjectId

from .background import repeat, stop
from .errors import InvalidTransition
from .jobs.model import JobState, utcnow
from .settings import Settings
from .store.db import Database
from .typedefs import DB_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)

SWEEP_CHUNK = 200
COMPLETED, TERMINATED = JobState.COMPLETED.value, JobState.TERMINATED.value
# Finished jobs that may be deleted (see the module docstring).
DELETABLE = ({"state": TERMINATED}, {"state": COMPLETED, "kind": {"$in": ["export", "teams"]}})


def deletable(job: dict[str, Any]) -> bool:
    return job["state"] == TERMINATED or (job["state"] == COMPLETED and job["kind"] in ("export", "teams"))


async def delete_job(db: Database, job: dict[str, Any]) -> None:
    """Deletes a finished job, its progress document and its result file (the
    file first: a job is never left pointing at nothing it could not explain)."""
    if not deletable(job):
        if job["state"] == COMPLETED:
            reason = "a completed import describes its dataset for as long as its rows exist"
        elif job["state"] == JobState.FAILED.value:
            reason = "a failed job may still hold rows; terminate it first, then delete it"
        else:
            reason = "only a finished job can be deleted; terminate it first"
        raise InvalidTransition(f"Cannot delete a job that is {job['state']}: {reason}.", state=job["state"])
    await _delete_result(db, job)
    await db.jobs.delete_one({"_id": job["_id"], "org_id": job["org_id"], "state": job["state"]})
    await db.job_progress.delete_one({"_id": job["_id"]})


async def _delete_result(db: Database, job: dict[str, Any]) -> None:
    params = job.get("params") or {}
    if job["kind"] == "export" and params.get("file_id"):
        await db.exports.delete(ObjectId(params["file_id"]))


async def sweep(db: Database, settings: Settings, now: dt.datetime | None = None) -> dict[str, int]:
    """One pass of both expiries; returns how many files and jobs it deleted."""
    now = now or utcnow()
    result_cutoff = now - dt.timedelta(days=settings.result_retention_days)
    job_cutoff = now - dt.timedelta(days=settings.job_retention_days)
    done = {"results": 0, "jobs": 0}
    expired_results = {
        "state": COMPLETED,
        "finished_at": {"$lt": result_cutoff},
        "kind": "export",
        "result_deleted_at": None,
    }
    while batch := await db.jobs.find(expired_results, {"kind": 1, "params": 1}, limit=SWEEP_CHUNK).to_list():
        for job in batch:
            await _delete_result(db, job)
            await db.jobs.update_one({"_id": job["_id"], "state": COMPLETED}, {"$set": {"result_deleted_at": now}})
            done["results"] += 1
    for which in DELETABLE:
        query = {**which, "finished_at": {"$lt": job_cutoff}}
        while batch := await db.jobs.find(query, {"kind": 1, "state": 1, "org_id": 1, "params": 1}, limit=SWEEP_CHUNK).to_list():
            for job in batch:
                await delete_job(db, job)
                done["jobs"] += 1
    if done["results"] or done["jobs"]:
        log.info("retention: deleted %d result files and %d jobs", done["results"], done["jobs"])
    return done


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx, after the database's: sweeps in the background."""
    db, settings = app[DB_KEY], app[SETTINGS_KEY]

    def failed(exc: Exception) -> None:  # an outage: the next sweep retries
        log.warning("retention sweep failed: %s", exc)

    task = asyncio.create_task(
        repeat(lambda: sweep(db, settings), settings.retention_sweep_seconds, failed), name="retention-sweeper"
    )
    yield
    await stop(task)
