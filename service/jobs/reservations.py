"""Limits as reservations: what an org may hold at once (stream slots, queued
jobs, uploads streaming, upload bytes, stored records and results) is taken
before the work, in one conditional write, and given back when the work ends.

One document per (org, scope) in ``reservations``: ``used`` (the total held)
and ``held`` (each holder's share ``n`` and when it last took some, ``at``).
A holder is the job the share is for (the id a request gives its job before
it exists). Taking is one ``find_one_and_update`` whose filter says the total
stays within the limit after it (``used <= limit - amount``), so two racing
requests on any replicas can never both pass the last unit: single-document
updates are atomic on MongoDB, and on FerretDB 1.24 with the project's patch;
no transaction is needed. Releasing removes a holder's share in one write
guarded by the share read, so a release repeated (a retry, a second path)
gives nothing back twice.

A replica can die holding shares. Shares name their jobs, so when an org is
found full, the reservation first reconciles: every share whose job no longer
needs it (finished, or in a state the scope does not hold for; or missing and
older than GRACE_SECONDS, which covers the moment between a reservation and
its job's creation) is released, then the reservation is tried once more.
A full org is the only time stale shares matter, so nothing sweeps them
otherwise."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from .model import utcnow
from .states import ACTIVE, JobState

# A share whose job does not exist is kept this long after it last took some:
# an upload in progress, or a stream whose job is being created. A streaming
# upload refreshes its share at least every TOUCH_SECONDS.
GRACE_SECONDS = 300.0
TOUCH_SECONDS = 60.0

STREAMS = "streams"
QUEUED = "queued"
UPLOADS = "uploads"
UPLOAD_BYTES = "upload_bytes"
RECORD_BYTES = "record_bytes"
RESULT_BYTES = "result_bytes"

_HELD_BY_STORED = frozenset(s.value for s in JobState) - {JobState.TERMINATED.value}
# The states in which a holder's job still needs its share, by scope.
LIVE: dict[str, frozenset[str]] = {
    STREAMS: frozenset(s.value for s in ACTIVE),
    QUEUED: frozenset({JobState.QUEUED.value}),
    UPLOADS: frozenset(),  # only while the upload streams: before its job exists
    # an upload is kept until its job completes or is terminated
    UPLOAD_BYTES: frozenset(s.value for s in JobState) - {JobState.COMPLETED.value, JobState.TERMINATED.value},
    RECORD_BYTES: _HELD_BY_STORED,
    RESULT_BYTES: _HELD_BY_STORED,
}

JobStates = Callable[[list[str]], Awaitable[dict[str, str]]]


async def _no_states(job_ids: list[str]) -> dict[str, str]:
    raise AssertionError("this Reservations cannot reconcile")


class Reservations:
    def __init__(self, collection: AsyncCollection, job_states: JobStates = _no_states) -> None:
        self.collection = collection
        self._job_states = job_states

    async def take(self, org_id: str, scope: str, holder: str, amount: int, limit: int) -> bool:
        """Adds ``amount`` to ``holder``'s share if the org's total stays within
        ``limit``; reconciles once when it would not. Whether it was taken."""
        if await self._take(org_id, scope, holder, amount, limit):
            return True
        return await self.reconcile(org_id, scope) and await self._take(org_id, scope, holder, amount, limit)

    async def ensure(self, org_id: str, scope: str, holder: str, total: int, limit: int) -> bool:
        """Raises ``holder``'s share to ``total`` (never lowers it): a job that
        replays a batch after a crash reserves nothing twice. A holder is one
        job, which writes from one runner at a time."""
        current = await self.share(org_id, scope, holder)
        if total <= current:
            return True
        return await self.take(org_id, scope, holder, total - current, limit)

    async def share(self, org_id: str, scope: str, holder: str) -> int:
        doc = await self.collection.find_one({"_id": _key(org_id, scope)}, {f"held.{holder}": 1})
        return int(((doc or {}).get("held") or {}).get(holder, {}).get("n", 0))

    async def release(self, org_id: str, scope: str, holder: str) -> int:
        """Gives ``holder``'s share back; what it held (0 if nothing)."""
        key = _key(org_id, scope)
        for _ in range(5):
            doc = await self.collection.find_one({"_id": key}, {f"held.{holder}": 1})
            share = ((doc or {}).get("held") or {}).get(holder)
            if share is None:
                return 0
            n = share["n"]
            result = await self.collection.update_one(
                {"_id": key, f"held.{holder}.n": n}, {"$inc": {"used": -n}, "$unset": {f"held.{holder}": ""}}
            )
            if result.modified_count:
                return int(n)
        return 0

    async def shrink(self, org_id: str, scope: str, holder: str, amount: int) -> None:
        """Gives back ``amount`` of ``holder``'s share (what it reserved ahead)."""
        await self.collection.update_one(
            {"_id": _key(org_id, scope), f"held.{holder}.n": {"$gte": amount}},
            {"$inc": {"used": -amount, f"held.{holder}.n": -amount}},
        )

    async def reconcile(self, org_id: str, scope: str) -> bool:
        """Releases the shares no job needs any more (see the module's
        docstring); whether any was released."""
        doc = await self.collection.find_one({"_id": _key(org_id, scope)})
        held: dict[str, Any] = (doc or {}).get("held") or {}
        if not held:
            return False
        states = await self._job_states(list(held))
        stale_before = utcnow() - dt.timedelta(seconds=GRACE_SECONDS)
        freed = False
        for holder, share in held.items():
            state = states.get(holder)
            at = share.get("at")
            if at is not None and at.tzinfo is None:
                at = at.replace(tzinfo=dt.timezone.utc)
            stale = (at is None or at < stale_before) if state is None else state not in LIVE[scope]
            if stale and await self.release(org_id, scope, holder):
                freed = True
        return freed

    async def used(self, org_id: str, scope: str) -> int:
        doc = await self.collection.find_one({"_id": _key(org_id, scope)}, {"used": 1})
        return int((doc or {}).get("used", 0))

    async def _take(self, org_id: str, scope: str, holder: str, amount: int, limit: int) -> bool:
        if amount > limit:
            return False
        key = _key(org_id, scope)
        now = utcnow()
        update = {"$inc": {"used": amount, f"held.{holder}.n": amount}, "$set": {f"held.{holder}.at": now}}
        for _ in range(2):
            doc = await self.collection.find_one_and_update(
                {"_id": key, "used": {"$lte": limit - amount}}, update, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return True
            try:
                # The org's first reservation of this scope (a full one exists, and refuses).
                await self.collection.insert_one(
                    {"_id": key, "org_id": org_id, "scope": scope, "used": amount, "held": {holder: {"n": amount, "at": now}}}
                )
                return True
            except DuplicateKeyError:
                continue  # it exists: full, or created meanwhile (then tried once more)
        return False


def _key(org_id: str, scope: str) -> str:
    return f"{org_id}/{scope}"
