"""Job documents in MongoDB. Every state change is one guarded find_one_and_update:
the filter names the job and the states it may leave (and, for a runner, that it
still owns the job), so two racing writers can never both win."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from ..errors import InvalidTransition, JobNotFound
from .model import HOLDS_SLOT, NEEDS_RUNNER, Action, JobState, utcnow

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MAX_ERRORS_KEPT = 100


def _values(states: Iterable[JobState]) -> list[str]:
    return [s.value for s in states]


class JobRepo:
    def __init__(self, jobs: AsyncCollection) -> None:
        self.jobs = jobs

    async def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        doc = {
            "state": JobState.QUEUED.value,
            "rev": 0,
            "progress": {},
            "checkpoint": None,
            "errors": [],
            "error": None,
            "owner": None,
            "lease_until": EPOCH,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
            **doc,
        }
        await self.jobs.insert_one(doc)
        return doc

    async def get(self, org_id: str, job_id: str) -> dict[str, Any]:
        doc = await self.jobs.find_one({"_id": job_id, "org_id": org_id})
        if doc is None:
            raise JobNotFound(f"No job {job_id!r} exists in your organisation.")
        return doc

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
        cursor = self.jobs.find(query, sort=[("_id", DESCENDING)], limit=limit)
        return await cursor.to_list()

    async def request(self, org_id: str, job_id: str, action: Action) -> dict[str, Any]:
        """Apply a user's pause/resume/terminate; 404 or 409 when it cannot apply."""
        now = utcnow()
        update: dict[str, Any] = {"$set": {"state": action.target.value, "updated_at": now}, "$inc": {"rev": 1}}
        if action.target is JobState.TERMINATING:
            update["$set"]["terminate_requested_at"] = now
        doc = await self.jobs.find_one_and_update(
            {"_id": job_id, "org_id": org_id, "state": {"$in": _values(action.sources)}},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return doc
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
        **fields: Any,
    ) -> dict[str, Any] | None:
        """A runner's own transition; None when the state or the ownership changed under it."""
        now = utcnow()
        values = {"state": target.value, "updated_at": now, **fields}
        if target in (JobState.COMPLETED, JobState.TERMINATED, JobState.FAILED):
            values.update(finished_at=now, owner=None, lease_until=EPOCH)
        return await self.jobs.find_one_and_update(
            {"_id": job_id, "owner": owner, "state": {"$in": _values(sources)}},
            {"$set": values, "$inc": {"rev": 1}},
            return_document=ReturnDocument.AFTER,
        )

    async def save_progress(
        self,
        job_id: str,
        owner: str,
        lease_until: dt.datetime,
        progress: dict[str, Any],
        checkpoint: dict[str, Any] | None,
        new_errors: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """Persist progress and the resumable position; returns the job (with its
        current state) or None when this replica no longer owns it."""
        update: dict[str, Any] = {
            "$set": {"progress": progress, "checkpoint": checkpoint, "lease_until": lease_until, "updated_at": utcnow()}
        }
        if new_errors:
            update["$push"] = {"errors": {"$each": new_errors}}
        return await self.jobs.find_one_and_update(
            {"_id": job_id, "owner": owner},
            update,
            # No projection: FerretDB does not implement one on findAndModify.
            return_document=ReturnDocument.AFTER,
        )

    async def claim_queued(self, job_id: str, owner: str, lease_until: dt.datetime) -> dict[str, Any] | None:
        now = utcnow()
        return await self.jobs.find_one_and_update(
            {"_id": job_id, "state": JobState.QUEUED.value},
            {
                "$set": {
                    "state": JobState.RUNNING.value,
                    "owner": owner,
                    "lease_until": lease_until,
                    "started_at": now,
                    "updated_at": now,
                },
                "$inc": {"rev": 1},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def unclaim(self, job_id: str, owner: str) -> None:
        """Give a just-claimed job back to the queue (admission lost a race)."""
        await self.jobs.update_one(
            {"_id": job_id, "owner": owner, "state": JobState.RUNNING.value},
            {
                "$set": {"state": JobState.QUEUED.value, "owner": None, "lease_until": EPOCH, "started_at": None},
                "$inc": {"rev": 1},
            },
        )

    async def adopt(self, job_id: str, owner: str, lease_until: dt.datetime) -> dict[str, Any] | None:
        """Take over a job whose owner's lease expired (its replica died or shut down)."""
        return await self.jobs.find_one_and_update(
            {"_id": job_id, "state": {"$in": _values(NEEDS_RUNNER)}, "lease_until": {"$lt": utcnow()}},
            {"$set": {"owner": owner, "lease_until": lease_until, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )

    async def release(self, job_id: str, owner: str) -> None:
        """Hand a job back so any replica may adopt it at once (graceful shutdown)."""
        await self.jobs.update_one(
            {"_id": job_id, "owner": owner},
            {"$set": {"owner": None, "lease_until": EPOCH, "updated_at": utcnow()}},
        )

    async def renew(self, owner: str, job_ids: list[str], lease_until: dt.datetime) -> list[dict[str, Any]]:
        """One tick of the owner's loop: extend the leases of all its jobs and read
        their states back, so requests made on other replicas are seen."""
        await self.jobs.update_many({"_id": {"$in": job_ids}, "owner": owner}, {"$set": {"lease_until": lease_until}})
        cursor = self.jobs.find({"_id": {"$in": job_ids}}, {"state": 1, "rev": 1, "owner": 1})
        return await cursor.to_list()

    async def queued(self, limit: int) -> list[dict[str, Any]]:
        cursor = self.jobs.find(
            {"state": JobState.QUEUED.value},
            {"org_id": 1, "kind": 1},
            sort=[("_id", 1)],
            limit=limit,
        )
        return await cursor.to_list()

    async def orphans(self, limit: int) -> list[dict[str, Any]]:
        cursor = self.jobs.find(
            {"state": {"$in": _values(NEEDS_RUNNER)}, "lease_until": {"$lt": utcnow()}},
            {"_id": 1},
            sort=[("_id", 1)],
            limit=limit,
        )
        return await cursor.to_list()

    async def slot_holders(self, org_id: str, kind: str) -> list[str]:
        """Ids, oldest first, of the org's jobs of this kind that hold an admission slot."""
        cursor = self.jobs.find(
            {"org_id": org_id, "kind": kind, "state": {"$in": _values(HOLDS_SLOT)}},
            {"_id": 1},
            sort=[("_id", 1)],
        )
        return [d["_id"] async for d in cursor]
