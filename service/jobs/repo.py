"""Job documents in MongoDB.

A job is two documents, split by who writes them:

- ``jobs``: identity, params and the control state. Written by users' requests
  and by state transitions. Every state change is one guarded
  find_one_and_update: the filter names the job and the states it may leave,
  so two racing writers can never both win.
- ``job_progress``: progress, the resumable checkpoint, row errors and the lease
  (``owner``, ``lease_until``). Written only by the replica running the job.

The split keeps the frequent checkpoint writes from ever touching the document
a pause or terminate writes. MongoDB makes each update atomic anyway; FerretDB
1.24 on SQLite applies updates as read-then-write (FerretDB #3040), so a
checkpoint racing a pause on one document could write the old state back.
For the same reason this process also serialises its own writes per job."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from ..errors import InvalidTransition, JobNotFound
from .model import HOLDS_SLOT, NEEDS_RUNNER, Action, JobState, utcnow

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MAX_ERRORS_KEPT = 100
PROGRESS_FIELDS = ("progress", "checkpoint", "errors", "owner", "lease_until")
FINISHED = (JobState.COMPLETED, JobState.TERMINATED, JobState.FAILED)


def _values(states: Iterable[JobState]) -> list[str]:
    return [s.value for s in states]


def _merge(job: dict[str, Any], run: dict[str, Any] | None) -> dict[str, Any]:
    run = run or {}
    return {**job, **{k: run.get(k) for k in PROGRESS_FIELDS}, "errors": run.get("errors") or []}


class JobRepo:
    def __init__(self, jobs: AsyncCollection, runs: AsyncCollection) -> None:
        self.jobs = jobs
        self.runs = runs
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, job_id: str) -> asyncio.Lock:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = self._locks[job_id] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def _locked(self, job_ids: Iterable[str]) -> AsyncIterator[None]:
        locks = [self._lock(i) for i in sorted(set(job_ids))]
        async with contextlib.AsyncExitStack() as stack:
            for lock in locks:
                await stack.enter_async_context(lock)
            yield

    # -- reading ---------------------------------------------------------------

    async def get(self, org_id: str, job_id: str) -> dict[str, Any]:
        job = await self.jobs.find_one({"_id": job_id, "org_id": org_id})
        if job is None:
            raise JobNotFound(f"No job {job_id!r} exists in your organisation.")
        return _merge(job, await self.runs.find_one({"_id": job_id}))

    async def list(
        self, org_id: str, *, states: list[str], kinds: list[str], limit: int, before: str | None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"org_id": org_id}
        if states:
            query["state"] = {"$in": states}
        if kinds:
            query["kind"] = {"$in": kinds}
        if before:
            query["_id"] = {"$lt": before}
        jobs = await self.jobs.find(query, sort=[("_id", DESCENDING)], limit=limit).to_list()
        runs = {r["_id"]: r async for r in self.runs.find({"_id": {"$in": [j["_id"] for j in jobs]}})}
        return [_merge(j, runs.get(j["_id"])) for j in jobs]

    async def queued(self, limit: int) -> list[dict[str, Any]]:
        cursor = self.jobs.find({"state": JobState.QUEUED.value}, {"org_id": 1, "kind": 1}, sort=[("_id", 1)], limit=limit)
        return await cursor.to_list()

    async def orphans(self, limit: int) -> list[str]:
        """Jobs that need a runner and whose owner's lease has expired; also
        streamed exports left paused by a replica that died (they can only end)."""
        query = {
            "$or": [
                {"state": {"$in": _values(NEEDS_RUNNER)}},
                {"state": JobState.PAUSED.value, "params.stream": True},
            ]
        }
        cursor = self.jobs.find(query, {"_id": 1}, sort=[("_id", 1)], limit=limit)
        ids = [d["_id"] async for d in cursor]
        if not ids:
            return []
        expired = self.runs.find({"_id": {"$in": ids}, "lease_until": {"$lt": utcnow()}}, {"_id": 1})
        return sorted([d["_id"] async for d in expired])

    async def slot_holders(self, org_id: str, kind: str) -> list[str]:
        """Ids, oldest first, of the org's jobs of this kind that hold an admission slot."""
        cursor = self.jobs.find(
            {"org_id": org_id, "kind": kind, "state": {"$in": _values(HOLDS_SLOT)}}, {"_id": 1}, sort=[("_id", 1)]
        )
        return [d["_id"] async for d in cursor]

    # -- the control document -------------------------------------------------

    async def create(
        self,
        job: dict[str, Any],
        progress: dict[str, Any],
        owner: str | None = None,
        lease_until: dt.datetime = EPOCH,
    ) -> dict[str, Any]:
        """A new job, queued; or, with an owner, already running on that replica."""
        now = utcnow()
        job = {
            "state": JobState.QUEUED.value,
            "rev": 0,
            "error": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
            **job,
        }
        if owner is not None:
            job.update(state=JobState.RUNNING.value, started_at=now)
        run = {"_id": job["_id"], "progress": progress, "checkpoint": None, "errors": [], "owner": owner, "lease_until": lease_until}
        # The progress document first: a job visible in the queue always has one.
        await self.runs.insert_one(run)
        await self.jobs.insert_one(job)
        return _merge(job, run)

    async def request(self, org_id: str, job_id: str, action: Action) -> dict[str, Any]:
        """Apply a user's pause/resume/terminate; 404 or 409 when it cannot apply."""
        now = utcnow()
        fields: dict[str, Any] = {"state": action.target.value, "updated_at": now}
        if action.target is JobState.TERMINATING:
            fields["terminate_requested_at"] = now
        if action.target is JobState.RUNNING:
            fields["pause_reason"] = None  # a resume accepts what a self-pause reported
        async with self._locked([job_id]):
            job = await self.jobs.find_one_and_update(
                {"_id": job_id, "org_id": org_id, "state": {"$in": _values(action.sources)}},
                {"$set": fields, "$inc": {"rev": 1}},
                return_document=ReturnDocument.AFTER,
            )
        if job is not None:
            return _merge(job, await self.runs.find_one({"_id": job_id}))
        current = await self.get(org_id, job_id)
        raise InvalidTransition(
            f"Cannot {action.name} a job that is {current['state']}; "
            f"{action.name} applies to {', '.join(sorted(_values(action.sources)))} jobs.",
            state=current["state"],
        )

    async def transition(
        self,
        job_id: str,
        owner: str,
        sources: Iterable[JobState],
        target: JobState,
        progress: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """A runner's own transition; None when the state changed under it."""
        now = utcnow()
        values = {"state": target.value, "updated_at": now, **fields}
        if target in FINISHED:
            values["finished_at"] = now
        async with self._locked([job_id]):
            job = await self.jobs.find_one_and_update(
                {"_id": job_id, "state": {"$in": _values(sources)}},
                {"$set": values, "$inc": {"rev": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if job is None:
                return None
            run_fields: dict[str, Any] = {} if progress is None else {"progress": progress}
            if target in FINISHED:
                run_fields.update(owner=None, lease_until=EPOCH)
            if run_fields:
                await self.runs.update_one({"_id": job_id, "owner": owner}, {"$set": run_fields})
        return job

    async def claim_queued(self, job_id: str, owner: str, lease_until: dt.datetime) -> dict[str, Any] | None:
        now = utcnow()
        async with self._locked([job_id]):
            job = await self.jobs.find_one_and_update(
                {"_id": job_id, "state": JobState.QUEUED.value},
                {"$set": {"state": JobState.RUNNING.value, "started_at": now, "updated_at": now}, "$inc": {"rev": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if job is None:
                return None
            run = await self.runs.find_one_and_update(
                {"_id": job_id},
                {"$set": {"owner": owner, "lease_until": lease_until}},
                return_document=ReturnDocument.AFTER,
            )
        return _merge(job, run)

    async def unclaim(self, job_id: str, owner: str) -> None:
        """Give a just-claimed job back to the queue (admission lost a race)."""
        async with self._locked([job_id]):
            await self.jobs.update_one(
                {"_id": job_id, "state": JobState.RUNNING.value},
                {"$set": {"state": JobState.QUEUED.value, "started_at": None}, "$inc": {"rev": 1}},
            )
            await self.runs.update_one({"_id": job_id, "owner": owner}, {"$set": {"owner": None, "lease_until": EPOCH}})

    # -- the progress document (the owner's) ----------------------------------

    async def save_progress(
        self,
        job_id: str,
        owner: str,
        lease_until: dt.datetime,
        progress: dict[str, Any],
        checkpoint: dict[str, Any] | None,
        new_errors: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """Persist progress and the resumable position and extend the lease; returns
        the job's current state and rev, or None when this replica lost the job."""
        update: dict[str, Any] = {"$set": {"progress": progress, "checkpoint": checkpoint, "lease_until": lease_until}}
        if new_errors:
            update["$push"] = {"errors": {"$each": new_errors}}
        async with self._locked([job_id]):
            result = await self.runs.update_one({"_id": job_id, "owner": owner}, update)
        if result.matched_count == 0:
            return None
        return await self.jobs.find_one({"_id": job_id}, {"state": 1, "rev": 1})

    async def adopt(self, job_id: str, owner: str, lease_until: dt.datetime) -> dict[str, Any] | None:
        """Take over a job whose owner's lease expired (its replica died or shut down)."""
        async with self._locked([job_id]):
            run = await self.runs.find_one_and_update(
                {"_id": job_id, "lease_until": {"$lt": utcnow()}},
                {"$set": {"owner": owner, "lease_until": lease_until}},
                return_document=ReturnDocument.AFTER,
            )
        if run is None:
            return None
        job = await self.jobs.find_one({"_id": job_id})
        stream = job is not None and job.get("params", {}).get("stream")
        if job is None or (job["state"] not in _values(NEEDS_RUNNER) and not stream):
            await self.release(job_id, owner)
            return None
        return _merge(job, run)

    async def release(self, job_id: str, owner: str) -> None:
        """Hand a job back so any replica may adopt it at once."""
        async with self._locked([job_id]):
            await self.runs.update_one({"_id": job_id, "owner": owner}, {"$set": {"owner": None, "lease_until": EPOCH}})

    async def renew(self, owner: str, job_ids: list[str], lease_until: dt.datetime) -> list[dict[str, Any]]:
        """One tick of the owner's loop for all its jobs at once: extend their leases
        and read their states back, so requests made on other replicas are seen."""
        async with self._locked(job_ids):
            await self.runs.update_many({"_id": {"$in": job_ids}, "owner": owner}, {"$set": {"lease_until": lease_until}})
        owned = {d["_id"] async for d in self.runs.find({"_id": {"$in": job_ids}, "owner": owner}, {"_id": 1})}
        jobs = await self.jobs.find({"_id": {"$in": job_ids}}, {"state": 1, "rev": 1}).to_list()
        return [{**j, "owned": j["_id"] in owned} for j in jobs]
