"""Job documents in MongoDB.

A job is two documents, split by who writes them:

- ``jobs``: identity, params, the control state, and who owns the job
  (``owner`` and the ownership ``epoch``). Written by users' requests and by
  state transitions; each is one guarded find_one_and_update whose filter
  names the job and the states it may leave, so two racing writers can never
  both win. A runner's own transitions are also guarded by its epoch.
- ``job_progress``: progress, the resumable checkpoint, row errors, and the
  lease (``owner``, ``epoch``, ``lease_until`` in the database's time).
  Written only by the replica that holds the lease, guarded by its epoch.

Ownership is acquired on the lease document first (an atomic
compare-and-set on an expired or absent lease that increments the epoch),
then recorded on the control document with the same epoch, in the same
write that makes a queued job ``running``: a running job always has an
owner. Every later write of that runner names its epoch, so a replica that
lost the job (it stalled past its lease and another adopted it) can no
longer change either document."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ..errors import InvalidTransition, JobNotFound
from ..store.clock import DbClock
from .model import utcnow
from .states import FINISHED, HOLDS_SLOT, NEEDS_RUNNER, ROLLING_BACK, JobState, Transition

MAX_ERRORS_KEPT = 100
PROGRESS_FIELDS = ("progress", "checkpoint", "errors", "lease_until", "rollback")
_UNLEASED: dict[str, Any] = {"$or": [{"lease_until": None}, {"lease_until": {"$exists": False}}]}


def rollback_needs_slot(job: dict[str, Any]) -> bool:
    """A rollback (or undo) that must wait for its org's slot of its kind while
    the slot is taken: one of a job that had started. A job that never started
    wrote nothing and rolls back at once (JobManager._may_run; the queue's
    ``waiting`` says why such a rollback has not begun)."""
    return job["state"] in _values(ROLLING_BACK) and job.get("started_at") is not None


def _rollback_blockers(org_id: str, kind: str, job_id: str) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "kind": kind,
        "state": {"$in": _values(HOLDS_SLOT)},
        "slot_released": {"$ne": True},
        "_id": {"$ne": job_id},
        "$or": [{"state": {"$nin": _values(ROLLING_BACK)}}, {"_id": {"$lt": job_id}}],
    }


def _values(states: Iterable[JobState]) -> list[str]:
    return [s.value for s in states]


def _merge(job: dict[str, Any], run: dict[str, Any] | None) -> dict[str, Any]:
    run = run or {}
    return {**job, **{k: run.get(k) for k in PROGRESS_FIELDS}, "errors": run.get("errors") or []}


@dataclass(frozen=True)
class ControlResult:
    """What a user's request did: the job as it is now, its state before, and
    whether the request changed anything (a repeated request does not)."""

    job: dict[str, Any]
    before: str
    changed: bool


@dataclass(frozen=True)
class Claim:
    """A job this replica now owns, at ``epoch``."""

    job: dict[str, Any]
    epoch: int


class JobRepo:
    def __init__(self, jobs: AsyncCollection, runs: AsyncCollection, clock: DbClock, lease_seconds: float) -> None:
        self.jobs = jobs
        self.runs = runs
        self.clock = clock
        self.lease_seconds = lease_seconds

    def lease_until(self) -> dt.datetime:
        return self.clock.after(self.lease_seconds)

    # -- reading ---------------------------------------------------------------

    async def get(self, org_id: str, job_id: str) -> dict[str, Any]:
        job = await self.jobs.find_one({"_id": job_id, "org_id": org_id})
        if job is None:
            raise JobNotFound(f"No job {job_id!r} exists in your organisation.")
        return _merge(job, await self.runs.find_one({"_id": job_id, "org_id": org_id}))

    async def page(
        self, org_id: str, *, states: list[str], kinds: list[str], limit: int, before: str | None
    ) -> list[dict[str, Any]]:
        """One page of an org's jobs, newest first, older than ``before``."""
        query: dict[str, Any] = {"org_id": org_id}
        if states:
            query["state"] = {"$in": states}
        if kinds:
            query["kind"] = {"$in": kinds}
        if before:
            query["_id"] = {"$lt": before}
        jobs = await self.jobs.find(query, sort=[("_id", DESCENDING)], limit=limit).to_list()
        ids = [j["_id"] for j in jobs]
        runs = {r["_id"]: r async for r in self.runs.find({"_id": {"$in": ids}, "org_id": org_id})}
        return [_merge(j, runs.get(j["_id"])) for j in jobs]

    async def queue_groups(self) -> list[tuple[str, str]]:
        """Every (org, kind) with queued jobs: admission looks at every org,
        however long the queue. (Grouped with $sum: FerretDB 1.24 implements
        neither $min nor $first in $group.)"""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"state": JobState.QUEUED.value}},
            {"$group": {"_id": {"org_id": "$org_id", "kind": "$kind"}, "queued": {"$sum": 1}}},
        ]
        groups = await (await self.jobs.aggregate(pipeline)).to_list()
        return [(g["_id"]["org_id"], g["_id"]["kind"]) for g in groups]

    async def queued(self, org_id: str, kind: str, limit: int) -> list[str]:
        """The ids of an org's oldest queued jobs of one kind."""
        cursor = self.jobs.find(
            {"org_id": org_id, "kind": kind, "state": JobState.QUEUED.value}, {"_id": 1}, sort=[("_id", 1)], limit=limit
        )
        return [d["_id"] async for d in cursor]

    async def running_by_org(self) -> dict[str, int]:
        """How many running jobs each org has, on every replica (admission's turns)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"state": JobState.RUNNING.value}},
            {"$group": {"_id": "$org_id", "running": {"$sum": 1}}},
        ]
        groups = await (await self.jobs.aggregate(pipeline)).to_list()
        return {g["_id"]: g["running"] for g in groups}

    async def slot_holders(self, org_id: str, kind: str) -> int:
        """How many of the org's jobs of this kind hold an admission slot (a
        streamed download holds a stream slot instead)."""
        return await self.jobs.count_documents(
            {
                "org_id": org_id,
                "kind": kind,
                "state": {"$in": _values(HOLDS_SLOT)},
                "slot_released": {"$ne": True},
                "params.stream": {"$ne": True},
            }
        )

    async def slot_holding(self, org_id: str, kind: str, limit: int) -> list[dict[str, Any]]:
        """The org's jobs of this kind that hold an admission slot, oldest first
        (id and state; at most ``limit``): what a queued job waits for."""
        query = {
            "org_id": org_id,
            "kind": kind,
            "state": {"$in": _values(HOLDS_SLOT)},
            "slot_released": {"$ne": True},
            "params.stream": {"$ne": True},
        }
        return await self.jobs.find(query, {"state": 1}, sort=[("_id", 1)], limit=limit).to_list()

    async def unowned(self, limit: int, after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs that need a runner, have none, and whose rollback backoff is
        over: handed back at shutdown, resumed after their runner left, or
        terminated while queued or failed. A backing-off job is left out by
        the query itself (``not_before``), so no number of them can hide a
        claimable job; the sweep goes through the rest a window at a time
        (``after``: where the last window ended; the next one is returned,
        None once the end is reached), so every one is looked at. Each comes
        with its org, kind and state; its lease is checked by the claim."""
        query: dict[str, Any] = {
            "state": {"$in": _values(NEEDS_RUNNER)},
            "owner": None,
            "$or": [{"not_before": None}, {"not_before": {"$lt": self.clock.now()}}],
        }
        if after is not None:
            query["_id"] = {"$gt": after}
        fields = {"org_id": 1, "kind": 1, "state": 1, "started_at": 1}
        jobs = await self.jobs.find(query, fields, sort=[("_id", 1)], limit=limit).to_list()
        return jobs, (jobs[-1]["_id"] if len(jobs) == limit else None)

    async def rollback_blockers(self, org_id: str, kind: str, job_id: str) -> int:
        """How many of the org's other jobs of this kind come before this
        rollback for a slot: those that hold one and are not rolling back, and
        older rollbacks (so two waiting rollbacks never wait for each other)."""
        return await self.jobs.count_documents(_rollback_blockers(org_id, kind, job_id))

    async def rollback_blocking(self, org_id: str, kind: str, job_id: str, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` of those jobs, oldest first (id and state): what
        a rollback or undo waiting for its org's slot is shown waiting for."""
        query = _rollback_blockers(org_id, kind, job_id)
        return await self.jobs.find(query, {"state": 1}, sort=[("_id", 1)], limit=limit).to_list()

    async def control_state(self, job_id: str) -> dict[str, Any] | None:
        """A job's state, rev and epoch (what a runner's gate follows)."""
        return await self.jobs.find_one({"_id": job_id}, {"state": 1, "rev": 1, "epoch": 1})

    async def expired(self, limit: int) -> list[tuple[str, int]]:
        """(job id, epoch) of every lease that has expired by the database's
        clock: its owner died or stalled. Only held leases have a time, so this
        finds every orphan however many healthy jobs exist."""
        cursor = self.runs.find(
            {"lease_until": {"$lt": self.clock.now()}}, {"_id": 1, "epoch": 1}, sort=[("lease_until", 1)], limit=limit
        )
        return [(d["_id"], d.get("epoch", 0)) async for d in cursor]

    # -- users' requests --------------------------------------------------------

    async def create(self, job: dict[str, Any], progress: dict[str, Any], owner: str | None = None) -> Claim | dict[str, Any]:
        """A new job, queued; or, with an owner, already running there (a streamed
        export), in which case the Claim is returned."""
        now = utcnow()
        job = {
            "state": JobState.QUEUED.value,
            "rev": 0,
            "epoch": 0,
            "owner": None,
            "error": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
            **job,
        }
        run: dict[str, Any] = {
            "_id": job["_id"],
            "org_id": job["org_id"],
            "progress": progress,
            "checkpoint": None,
            "errors": [],
            "owner": None,
            "epoch": 0,
            "lease_until": None,
        }
        if owner is not None:
            job.update(state=JobState.RUNNING.value, started_at=now, owner=owner, epoch=1)
            run.update(owner=owner, epoch=1, lease_until=self.lease_until())
        # The progress document first: a job visible in the queue always has one.
        try:
            await self.runs.insert_one(run)
        except DuplicateKeyError:
            # A replay of a creation that died between the two inserts (the id is
            # the Idempotency-Key's, kept across retries): its progress document
            # is an orphan unless the job exists, and is written afresh.
            if await self.jobs.find_one({"_id": job["_id"]}, {"_id": 1}) is not None:
                raise
            if (await self.runs.replace_one({"_id": job["_id"], "org_id": job["org_id"]}, run)).matched_count == 0:
                raise
        await self.jobs.insert_one(job)
        merged = _merge(job, run)
        return Claim(merged, 1) if owner is not None else merged

    async def request(
        self,
        org_id: str,
        job_id: str,
        action: Transition,
        where: dict[str, Any] | None = None,
        why_not: Callable[[dict[str, Any]], str] | None = None,
    ) -> ControlResult:
        """Apply a user's pause/resume/terminate/retry/undo: 404 for an unknown job, 409
        when it cannot apply, and the job unchanged when it already has. ``where``
        adds conditions to the guarded write (an undo's window); a job in a
        source state that they refuse is a 409 saying ``why_not(job)``."""
        assert action.by == "user", f"{action.name} is a runner's transition (see transition())"
        now = utcnow()
        fields: dict[str, Any] = {"state": action.target.value, "updated_at": now}
        update: dict[str, Any] = {"$set": fields, "$inc": {"rev": 1}}
        query: dict[str, Any] = {"_id": job_id, "org_id": org_id, "state": {"$in": _values(action.sources)}, **(where or {})}
        if action.target is JobState.TERMINATING:
            fields["terminate_requested_at"] = now
        elif action.target is JobState.UNDOING:
            fields["undo_requested_at"] = now
        elif action.target is JobState.RUNNING:
            update["$unset"] = {"pause_reason": ""}
        elif action.target is JobState.QUEUED:
            # Retry: only failures that a retry can cure (not a file's bad rows).
            query["retryable"] = {"$ne": False}
            fields.update(error=None, retryable=None, finished_at=None)
        before = await self.jobs.find_one_and_update(query, update, return_document=ReturnDocument.BEFORE)
        if before is not None:
            after = {**before, **fields, "rev": before.get("rev", 0) + 1}
            for name in update.get("$unset", {}):
                after.pop(name, None)
            run = await self.runs.find_one({"_id": job_id, "org_id": org_id})
            return ControlResult(_merge(after, run), before["state"], True)
        current = await self.get(org_id, job_id)
        if JobState(current["state"]) in action.satisfied:
            return ControlResult(current, current["state"], False)
        if why_not is not None and JobState(current["state"]) in action.sources:
            raise InvalidTransition(why_not(current), state=current["state"])
        if action.target is JobState.QUEUED and current["state"] == JobState.FAILED.value:
            raise InvalidTransition(
                f"This failure cannot be cured by a retry ({current.get('error')}); terminate the job and start a new one.",
                state=current["state"],
            )
        raise InvalidTransition(
            f"Cannot {action.name} a job that is {current['state']}; "
            f"{action.name} applies to {', '.join(sorted(_values(action.sources)))} jobs.",
            state=current["state"],
        )

    # -- claiming a job ----------------------------------------------------------

    async def _acquire(self, job_id: str, owner: str, lease: dict[str, Any]) -> int | None:
        """The lease half of a claim: compare-and-set on the lease document."""
        run = await self.runs.find_one_and_update(
            {"_id": job_id, **lease},
            {"$set": {"owner": owner, "lease_until": self.lease_until()}, "$inc": {"epoch": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return None if run is None else run["epoch"]

    async def _record(self, job_id: str, owner: str, epoch: int, query: dict[str, Any], start: bool) -> Claim | None:
        """The control half: the owner and epoch go on the job document, in the
        same write that makes a queued job running. Undone if the job moved on."""
        now = utcnow()
        fields: dict[str, Any] = {"owner": owner, "epoch": epoch}
        update: dict[str, Any] = {"$set": fields}
        if start:
            fields.update(state=JobState.RUNNING.value, started_at=now, updated_at=now)
            update["$inc"] = {"rev": 1}
        job = await self.jobs.find_one_and_update(
            {"_id": job_id, "epoch": {"$lt": epoch}, **query}, update, return_document=ReturnDocument.AFTER
        )
        run = await self.runs.find_one({"_id": job_id, "epoch": epoch})
        if job is None or run is None:
            # The job needs no runner (a paused job whose replica died) or moved
            # on: drop the lease, and any owner recorded before this epoch is
            # stale, so a later resume finds the job unowned.
            await self.runs.update_one({"_id": job_id, "epoch": epoch}, {"$set": {"owner": None, "lease_until": None}})
            await self.jobs.update_one({"_id": job_id, "epoch": {"$lte": epoch}}, {"$set": {"owner": None}})
            return None
        return Claim(_merge(job, run), epoch)

    async def claim_queued(self, job_id: str, owner: str) -> Claim | None:
        epoch = await self._acquire(job_id, owner, _UNLEASED)
        if epoch is None:
            return None
        return await self._record(job_id, owner, epoch, {"state": JobState.QUEUED.value}, start=True)

    async def claim_unowned(self, job_id: str, owner: str) -> Claim | None:
        """A job that needs a runner and has none (see unowned())."""
        lease = {"$or": [*_UNLEASED["$or"], {"lease_until": {"$lt": self.clock.now()}}]}
        epoch = await self._acquire(job_id, owner, lease)
        if epoch is None:
            return None
        return await self._record(job_id, owner, epoch, {"state": {"$in": _values(NEEDS_RUNNER)}}, start=False)

    async def adopt(self, job_id: str, seen_epoch: int, owner: str) -> Claim | None:
        """Take over a job whose owner's lease expired (its replica died or stalled)."""
        epoch = await self._acquire(job_id, owner, {"epoch": seen_epoch, "lease_until": {"$lt": self.clock.now()}})
        if epoch is None:
            return None
        query = {"$or": [{"state": {"$in": _values(NEEDS_RUNNER)}}, {"state": JobState.PAUSED.value, "params.stream": True}]}
        return await self._record(job_id, owner, epoch, query, start=False)

    # -- the owner's writes, each fenced by its epoch ----------------------------

    async def transition(
        self,
        job_id: str,
        epoch: int,
        transition: Transition,
        progress: dict[str, Any] | None = None,
        release: bool = False,
        checkpoint: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """A runner's own transition; None when the state changed under it or the
        job is no longer this runner's. A finished (or released) job has no owner.
        ``checkpoint``, when given, is written with ``progress``: a job that will
        continue later (a failed one, retried) must resume from the position its
        counts belong to."""
        assert transition.by == "runner", f"{transition.name} is a user's request (see request())"
        target = transition.target
        now = utcnow()
        values: dict[str, Any] = {"state": target.value, "updated_at": now, **fields}
        update: dict[str, Any] = {"$set": values, "$inc": {"rev": 1}}
        release = release or target in FINISHED
        if target in FINISHED:
            # The server's time when the job finished, not this replica's: an
            # export reads the imports finished by its creation (server_now()),
            # whatever the replicas' clocks say.
            update["$currentDate"] = {"finished_at": True}
        if release:
            values["owner"] = None
        job = await self.jobs.find_one_and_update(
            {"_id": job_id, "epoch": epoch, "state": {"$in": _values(transition.sources)}},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if job is None:
            return None
        run_fields: dict[str, Any] = {} if progress is None else {"progress": progress}
        if checkpoint is not None:
            run_fields["checkpoint"] = checkpoint
        if release:
            run_fields.update(owner=None, lease_until=None)
        if run_fields:
            await self.runs.update_one({"_id": job_id, "epoch": epoch}, {"$set": run_fields})
        return job

    async def save_progress(
        self,
        job_id: str,
        epoch: int,
        progress: dict[str, Any],
        checkpoint: dict[str, Any] | None,
        new_errors: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """Persist progress and the resumable position and extend the lease;
        returns the job's state, rev and epoch, or None when this runner lost it."""
        update: dict[str, Any] = {"$set": {"progress": progress, "checkpoint": checkpoint, "lease_until": self.lease_until()}}
        if new_errors:
            # $addToSet: errors re-sent after a save whose answer was lost
            # (JobContext.persist) are not listed twice.
            update["$addToSet"] = {"errors": {"$each": new_errors}}
        result = await self.runs.update_one({"_id": job_id, "epoch": epoch}, update)
        if result.matched_count == 0:
            return None
        return await self.jobs.find_one({"_id": job_id}, {"state": 1, "rev": 1, "epoch": 1})

    async def save_rollback(self, job_id: str, epoch: int, rollback: dict[str, Any]) -> None:
        await self.runs.update_one({"_id": job_id, "epoch": epoch}, {"$set": {"rollback": rollback}})

    async def release(self, job_id: str, epoch: int, not_before: dt.datetime | None = None, **fields: Any) -> None:
        """Hand a job back: any replica may claim it at once, or from ``not_before``
        (a rollback backing off after failures)."""
        run_fields: dict[str, Any] = {"owner": None, "lease_until": not_before}
        await self.runs.update_one({"_id": job_id, "epoch": epoch}, {"$set": run_fields})
        # ``not_before`` on the job too: the sweep of unowned jobs skips it in its query.
        await self.jobs.update_one({"_id": job_id, "epoch": epoch}, {"$set": {"owner": None, "not_before": not_before, **fields}})

    async def renew(self, leases: dict[str, int]) -> list[dict[str, Any]]:
        """One tick of the owner's loop for all its jobs at once: extend the leases
        it still holds and read their states back, so requests made on other
        replicas are seen. ``owned`` is false for a job another replica took."""
        if not leases:
            return []
        held = [{"_id": job_id, "epoch": epoch} for job_id, epoch in leases.items()]
        await self.runs.update_many({"$or": held}, {"$set": {"lease_until": self.lease_until()}})
        owned = {d["_id"] async for d in self.runs.find({"$or": held}, {"_id": 1})}
        jobs = await self.jobs.find({"_id": {"$in": list(leases)}}, {"state": 1, "rev": 1, "epoch": 1}).to_list()
        return [{**j, "owned": j["_id"] in owned and j.get("epoch") == leases[j["_id"]]} for j in jobs]

    # -- many jobs at once (service/api/bulk.py) ----------------------------------

    async def matching(self, org_id: str, where: dict[str, Any], after: str | None, limit: int) -> list[dict[str, Any]]:
        """An org's jobs matching ``where`` (a filter service/api/bulk.py built
        from the request), oldest first after ``after``: id, kind and state.
        The org and the _id range lead the filter: the (org, _id) index serves it."""
        query: dict[str, Any] = {**where, "org_id": org_id}
        if after is not None:
            query["_id"] = {**query.get("_id", {}), "$gt": after}
        fields = {"kind": 1, "state": 1}
        return await self.jobs.find(query, fields, sort=[("_id", 1)], limit=limit).to_list()

    # -- the undo window (service/jobs/undo.py, retention) ----------------------

    async def undo_window_over(self, kinds: list[str], cutoff: dt.datetime, limit: int) -> list[dict[str, Any]]:
        """Completed jobs of ``kinds`` that may still be undone but finished before ``cutoff``."""
        query = {"state": JobState.COMPLETED.value, "finished_at": {"$lt": cutoff}, "kind": {"$in": kinds}, "undoable": True}
        return await self.jobs.find(query, {"kind": 1, "org_id": 1, "params": 1}, limit=limit).to_list()

    async def end_undo(self, job_id: str, reason: str, now: dt.datetime) -> bool:
        """A completed job can no longer be undone (``reason``): one guarded write
        that an undo request racing it cannot both pass. True when this call
        ended it, or it had already ended and was not undone."""
        result = await self.jobs.update_one(
            {"_id": job_id, "state": JobState.COMPLETED.value},
            {"$set": {"undoable": False, "undo_ended": {"at": now, "reason": reason}}},
        )
        return result.matched_count == 1

    # -- retention, datasets and metrics: JobRepo owns jobs and job_progress -----

    async def expired_results(self, cutoff: dt.datetime, limit: int) -> list[dict[str, Any]]:
        """Completed exports that finished before ``cutoff`` and still have their file."""
        query = {"state": JobState.COMPLETED.value, "finished_at": {"$lt": cutoff}, "kind": "export", "result_deleted_at": None}
        return await self.jobs.find(query, {"kind": 1, "org_id": 1, "params": 1}, limit=limit).to_list()

    async def result_deleted(self, job_id: str, now: dt.datetime) -> None:
        await self.jobs.update_one({"_id": job_id, "state": JobState.COMPLETED.value}, {"$set": {"result_deleted_at": now}})

    async def finished_before(self, which: dict[str, Any], cutoff: dt.datetime, limit: int) -> list[dict[str, Any]]:
        """Jobs matching ``which`` (a state, maybe kinds) that finished before ``cutoff``."""
        query = {**which, "finished_at": {"$lt": cutoff}}
        return await self.jobs.find(query, {"kind": 1, "state": 1, "org_id": 1, "params": 1}, limit=limit).to_list()

    async def delete_finished(self, job: dict[str, Any]) -> bool:
        """Deletes a finished job's two documents if it is still in the state
        read; False (and nothing deleted) when it is not."""
        deleted = await self.jobs.delete_one({"_id": job["_id"], "org_id": job["org_id"], "state": job["state"]})
        if not deleted.deleted_count:
            return False
        await self.runs.delete_one({"_id": job["_id"]})
        return True

    async def states(self, job_ids: list[str]) -> dict[str, str]:
        """The state of each of these jobs that exists."""
        if not job_ids:
            return {}
        return {j["_id"]: j["state"] async for j in self.jobs.find({"_id": {"$in": job_ids}}, {"state": 1})}

    async def results(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each of these jobs' state and result file (``params.file_id``), by id."""
        if not job_ids:
            return {}
        cursor = self.jobs.find({"_id": {"$in": job_ids}}, {"state": 1, "params.file_id": 1})
        return {j["_id"]: {"state": j["state"], "file_id": j.get("params", {}).get("file_id")} async for j in cursor}

    async def file_states(self, file_ids: list[str]) -> dict[str, str]:
        """The state of the job that writes each of these files (an export's
        ``params.file_id``), for those a job names."""
        if not file_ids:
            return {}
        cursor = self.jobs.find({"params.file_id": {"$in": file_ids}}, {"state": 1, "params.file_id": 1})
        return {j["params"]["file_id"]: j["state"] async for j in cursor}

    async def imports(
        self, org_id: str, dataset: str, states: Iterable[JobState], finished_by: dt.datetime | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """A dataset's imports in ``states`` (that had finished by ``finished_by``),
        oldest first, with what describes them (params.columns, types,
        file_bytes, rows), streamed."""
        query: dict[str, Any] = {"org_id": org_id, "kind": "import", "params.dataset": dataset, "state": {"$in": _values(states)}}
        if finished_by is not None:
            query["finished_at"] = {"$lte": finished_by}
        cursor = self.jobs.find(
            query,
            {"params.columns": 1, "params.types": 1, "params.file_bytes": 1, "params.rows": 1, "finished_at": 1},
            sort=[("_id", 1)],
        )
        async for job in cursor:
            yield job

    async def server_now(self) -> dt.datetime:
        """The database server's time now (``hello``'s localTime): what the
        server's own ``$currentDate`` is compared with."""
        reply = await self.jobs.database.command("hello")
        now = reply["localTime"]
        return now if now.tzinfo is not None else now.replace(tzinfo=dt.timezone.utc)

    async def inserted(self, org_id: str, job_ids: list[str]) -> int:
        """The rows these jobs inserted, by their progress."""
        if not job_ids:
            return 0
        total = 0
        async for run in self.runs.find({"_id": {"$in": job_ids}, "org_id": org_id}, {"progress.inserted": 1}):
            total += (run.get("progress") or {}).get("inserted", 0)
        return total

    async def queue_depth(self) -> tuple[int, dt.datetime | None]:
        """How many jobs are queued, over every org, and when the oldest was created."""
        queued = {"state": JobState.QUEUED.value}
        oldest = await self.jobs.find_one(queued, {"created_at": 1}, sort=[("_id", 1)])
        return await self.jobs.count_documents(queued), (oldest or {}).get("created_at")
