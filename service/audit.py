"""The audit trail: who created, paused, resumed, terminated, retried or deleted
which job, and who created or revoked which API key, with the job's state before
and after and the caller's reason. One event per effective action, appended to
``audit_events``; nothing in the API updates or deletes an event.

Event ids are ObjectIds, so "newest first" and "since" are ranges of the same
index that filters by org (and by job, actor or action)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING

from .auth.identity import Identity, caller
from .jobs.model import iso
from .store.db import Database
from .typedefs import DB_KEY

ACTIONS = (
    "job.create",
    "job.pause",
    "job.resume",
    "job.terminate",
    "job.retry",
    "job.delete",
    "job.undo",
    # One event per bulk request (POST /api/v1/jobs/{action}), listing every job it changed.
    "jobs.pause",
    "jobs.resume",
    "jobs.terminate",
    "api_key.create",
    "api_key.revoke",
)
HISTORY_LIMIT = 200
MAX_REASON = 1000


async def append(
    db: Database,
    who: Identity,
    action: str,
    *,
    job_id: str | None = None,
    key_id: str | None = None,
    state_before: str | None = None,
    state_after: str | None = None,
    reason: str | None = None,
    jobs: list[dict[str, Any]] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Appends one event; the only code that writes ``audit_events``. A bulk
    action lists its jobs (``jobs``: id, kind, states before and after) and
    keeps their ids in ``job_ids``, so each job's history shows it."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    # The time first: the ObjectId made after it is never from an earlier second,
    # which is what lets search() turn "since" into an _id range.
    at = dt.datetime.now(dt.timezone.utc)
    event = {
        "_id": ObjectId(),
        "at": at,
        "org_id": who.org_id,
        "action": action,
        "actor": who.actor,
        "actor_name": who.actor_name,
        "method": who.method,
        "role": who.role.value if who.role else None,
        "support": who.support,
        "home_org": who.home_org,
        "job_id": job_id,
        "key_id": key_id,
        "state_before": state_before,
        "state_after": state_after,
        "reason": reason,
    }
    if jobs is not None:
        event["jobs"] = jobs
        event["job_ids"] = [j["id"] for j in jobs]
    if details is not None:
        event["details"] = details
    await db.audit.insert_one(event)
    return event


async def record(request: web.Request, action: str, **fields: Any) -> dict[str, Any]:
    """append() for the request's caller: what handlers call."""
    return await append(request.app[DB_KEY], caller(request), action, **fields)


async def history(db: Database, org_id: str, job_id: str) -> list[dict[str, Any]]:
    """A job's events, oldest first (the first HISTORY_LIMIT of them), bulk
    actions that changed it included (without their list of other jobs)."""
    query = {"org_id": org_id, "$or": [{"job_id": job_id}, {"job_ids": job_id}]}
    cursor = db.audit.find(query, {"jobs": 0, "job_ids": 0}, sort=[("_id", ASCENDING)], limit=HISTORY_LIMIT)
    return [event_json(e) async for e in cursor]


async def search(
    db: Database,
    org_id: str,
    *,
    job_id: str | None,
    actor: str | None,
    action: str | None,
    since: dt.datetime | None,
    before: ObjectId | None,
    limit: int,
) -> list[dict[str, Any]]:
    """An org's events, newest first, filtered; ``before`` pages on."""
    query: dict[str, Any] = {"org_id": org_id}
    for field, value in (("job_id", job_id), ("actor", actor), ("action", action)):
        if value is not None:
            query[field] = value
    id_range: dict[str, Any] = {}
    if since is not None:
        id_range["$gte"] = ObjectId.from_datetime(since)  # whole seconds; "at" refines it
        query["at"] = {"$gte": since}
    if before is not None:
        id_range["$lt"] = before
    if id_range:
        query["_id"] = id_range
    cursor = db.audit.find(query, sort=[("_id", DESCENDING)], limit=limit)
    return [event_json(e) async for e in cursor]


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in event.items() if k not in ("_id", "job_ids")}
    body["id"] = str(event["_id"])
    body["at"] = iso(event["at"])
    return {"id": body.pop("id"), **body}
