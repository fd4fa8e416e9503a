"""What one batch of team rows does to the database, and how it is undone.

A job writes, in this order: before-images of the existing users it is about
to change (``undo_log``, first write wins), the users it creates (tagged with
its ``job_id``), the teams it creates (tagged too), then the changes to
existing users, each of which also sets ``last_job_id``. Every step can be
replayed after a crash. The invariant rollback relies on: a user whose
``last_job_id`` is the job was created by it or has its before-image saved."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from ..store.db import Database
from ..store.teams import team_id, team_key, undo_id, undo_range, user_id
from .rows import TEAM_EXISTS, RowError, TeamRow

DUPLICATE_KEY = 11000
# Updates run as single-document commands, a few at a time: FerretDB 1.24
# stalls for good on one update command holding ~100 statements against a
# collection of 10,000 documents, and on MongoDB a handful in flight is close
# to a bulk write's speed.
UPDATES_IN_FLIGHT = 8
ROLLBACK_CHUNK = 500


async def find_by_ids(collection: AsyncCollection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    return {doc["_id"]: doc async for doc in collection.find({"_id": {"$in": wanted}})}


def row_users(org_id: str, row: TeamRow) -> list[str]:
    return [user_id(org_id, row.manager_phone), *(user_id(org_id, p) for p in row.members)]


def screen(
    rows: list[TeamRow],
    existing: dict[str, dict[str, Any]],
    seen: dict[str, int],
    org_id: str,
    job_id: str | None,
) -> tuple[list[TeamRow], list[RowError]]:
    """Rows whose team may be created, and a row error for each team name that
    exists in the org already or earlier in the file (``seen``: key -> line).
    A team this job created from the same row is a replayed batch, not an error."""
    keep, errors = [], []
    for row in rows:
        key = team_key(row.team)
        doc = existing.get(team_id(org_id, row.team))
        ours = doc is not None and job_id is not None and doc.get("job_id") == job_id
        if ours and doc.get("row") == row.row:
            keep.append(row)
            continue
        if ours:
            message = f"team {row.team!r} is already created by line {doc.get('line')} of this file"
        elif doc is not None:
            message = f"a team named {doc.get('name', row.team)!r} already exists in the organisation"
        elif key in seen:
            message = f"team {row.team!r} is already on line {seen[key]} of this file"
        else:
            seen[key] = row.line
            keep.append(row)
            continue
        errors.append(RowError(row.row, row.line, TEAM_EXISTS, message))
    return keep, errors


async def check_batch(
    db: Database, org_id: str, job_id: str | None, parsed: list[TeamRow | RowError], seen: dict[str, int]
) -> tuple[list[TeamRow], list[RowError], dict[str, dict[str, Any]]]:
    """The database's part of checking a batch, shared by the job and the dry run:
    the rows whose team may be created, the rows refused because their team
    exists (see screen()), and the existing users that the batch's rows name."""
    rows = [p for p in parsed if isinstance(p, TeamRow)]
    existing = await find_by_ids(db.teams, (team_id(org_id, r.team) for r in rows))
    users = await find_by_ids(db.users, (uid for r in rows for uid in row_users(org_id, r)))
    rows, rejected = screen(rows, existing, seen, org_id, job_id)
    return rows, rejected, users


@dataclass
class Applied:
    teams_created: int = 0
    users_created: int = 0
    users_updated: int = 0


@dataclass
class _Changes:
    """What each user gains from a batch."""

    teams: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    phones: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


async def apply_batch(
    db: Database, org_id: str, job_id: str, rows: list[TeamRow], users: dict[str, dict[str, Any]], now: dt.datetime
) -> Applied:
    """Creates the batch's teams and users and changes existing users; ``users``
    holds the existing documents of every user the rows name."""
    applied = Applied()
    if not rows:
        return applied
    changes = _Changes()
    teams = []
    for row in rows:
        tid = team_id(org_id, row.team)
        manager, *members = row_users(org_id, row)
        for uid, phone in zip((manager, *members), (row.manager_phone, *row.members)):
            changes.teams[uid].append(tid)
            changes.phones[uid] = phone
        if row.manager_name:
            changes.names.setdefault(manager, row.manager_name)
        teams.append(
            {
                "_id": tid,
                "org_id": org_id,
                "name": row.team,
                "manager_id": manager,
                "member_ids": members,
                "job_id": job_id,
                "row": row.row,
                "line": row.line,
                "created_at": now,
            }
        )

    before = [
        {"_id": undo_id(job_id, uid), "job_id": job_id, "org_id": org_id, "user_id": uid, "before": doc, "created_at": now}
        for uid, doc in users.items()
        if uid in changes.teams and job_id not in (doc.get("job_id"), doc.get("last_job_id"))
    ]
    applied.users_updated = await _insert_new(db.undo, before)

    created = [
        {
            "_id": uid,
            "org_id": org_id,
            "phone": changes.phones[uid],
            "name": changes.names.get(uid),
            "teams": list(dict.fromkeys(tids)),
            "job_id": job_id,
            "last_job_id": job_id,
            "created_at": now,
            "updated_at": now,
        }
        for uid, tids in changes.teams.items()
        if uid not in users
    ]
    applied.users_created = await _insert_new(db.users, created)
    applied.teams_created = await _insert_new(db.teams, teams)

    updates = []
    for uid, doc in users.items():
        if uid not in changes.teams:
            continue
        values: dict[str, Any] = {"last_job_id": job_id, "updated_at": now}
        if not doc.get("name") and changes.names.get(uid):
            values["name"] = changes.names[uid]
        updates.append(
            partial(db.users.update_one, {"_id": uid}, {"$addToSet": {"teams": {"$each": changes.teams[uid]}}, "$set": values})
        )
    await _bounded(updates)
    return applied


async def _insert_new(collection: AsyncCollection, docs: list[dict[str, Any]]) -> int:
    """Inserts the documents not there yet (a replayed batch finds some there);
    returns how many were new."""
    if not docs:
        return 0
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return len(docs) - len(errors)
    return len(docs)


async def _bounded(calls: list[Callable[[], Awaitable[Any]]]) -> None:
    for start in range(0, len(calls), UPDATES_IN_FLIGHT):
        await asyncio.gather(*(call() for call in calls[start : start + UPDATES_IN_FLIGHT]))


# -- rollback -----------------------------------------------------------------


async def restore_users(db: Database, job_id: str) -> tuple[int, int] | None:
    """Restores the before-images of one chunk of the job's undo log, then drops
    those entries; None when none are left. Returns (restored, kept): a user
    another job has changed since keeps that job's changes and loses only this
    job's teams."""
    entries = await db.undo.find({"_id": undo_range(job_id)}).sort("_id", 1).limit(ROLLBACK_CHUNK).to_list(None)
    if not entries:
        return None
    current = await find_by_ids(db.users, (e["user_id"] for e in entries))
    restored = kept = 0
    calls = []
    for entry in entries:
        doc = current.get(entry["user_id"])
        if doc is None:
            continue
        if doc.get("last_job_id") == job_id:
            calls.append(partial(db.users.replace_one, {"_id": doc["_id"], "last_job_id": job_id}, entry["before"]))
            restored += 1
        else:
            calls.append(partial(_take_back_teams, db, job_id, doc))
            kept += 1
    await _bounded(calls)
    await db.undo.delete_many({"_id": {"$in": [e["_id"] for e in entries]}})
    return restored, kept


async def delete_created_users(db: Database, org_id: str, job_id: str, after: str) -> tuple[str, int, int] | None:
    """Deletes one chunk (by _id, after ``after``) of the users the job created;
    None when none are left. Returns (last _id, deleted, kept): a user another
    job has since added to one of its teams is kept, without this job's teams."""
    docs = (
        await db.users.find({"org_id": org_id, "job_id": job_id, "_id": {"$gt": after}})
        .sort("_id", 1)
        .limit(ROLLBACK_CHUNK)
        .to_list(None)
    )
    if not docs:
        return None
    ours = [d["_id"] for d in docs if d.get("last_job_id") == job_id]
    others = [d for d in docs if d.get("last_job_id") != job_id]
    deleted = 0
    if ours:
        result = await db.users.delete_many({"_id": {"$in": ours}, "last_job_id": job_id})
        deleted = result.deleted_count
    await _bounded([partial(_take_back_teams, db, job_id, d) for d in others])
    return docs[-1]["_id"], deleted, len(others)


async def _delete_chunk(collection: AsyncCollection, query: dict[str, Any]) -> int | None:
    """Deletes up to ROLLBACK_CHUNK documents matching ``query`` (bounded, for
    progress and for FerretDB's limit on one delete); None when none match."""
    ids = [d["_id"] async for d in collection.find(query, {"_id": 1}).limit(ROLLBACK_CHUNK)]
    if not ids:
        return None
    result = await collection.delete_many({"_id": {"$in": ids}})
    return result.deleted_count


async def delete_teams(db: Database, org_id: str, job_id: str) -> int | None:
    """Deletes one chunk of the teams the job created; None when none are left."""
    return await _delete_chunk(db.teams, {"org_id": org_id, "job_id": job_id})


async def drop_undo_log(db: Database, job_id: str) -> None:
    """Deletes a completed job's before-images (it can no longer be terminated)."""
    while await _delete_chunk(db.undo, {"_id": undo_range(job_id)}) is not None:
        pass


async def _take_back_teams(db: Database, job_id: str, doc: dict[str, Any]) -> None:
    listed = doc.get("teams") or []
    ours = [t["_id"] async for t in db.teams.find({"_id": {"$in": listed}, "job_id": job_id}, {"_id": 1})] if listed else []
    if ours:
        await db.users.update_one({"_id": doc["_id"]}, {"$pullAll": {"teams": ours}})
