"""What one batch of team rows does to the database, and how it is undone.

A job writes, in this order: an undo entry for each existing user it is
about to change (``undo_log``, keyed by job and user: what the user looked
like in the two fields a job may touch), the users it creates (tagged with
its ``job_id``), the teams it creates (tagged too), then the changes to
existing users: the new teams added to ``teams``, and a name filled in where
the user had none. Nothing else of an existing user is ever written. Every
step can be replayed after a crash.

Rollback compensates rather than restores: it takes the job's own teams out
of each user it touched, puts back a name only where the user still has the
name the job gave, and deletes a user the job created only once no team is
left in it and nobody renamed it. Other jobs' changes and anyone else's edits
made between the job and its rollback survive, whichever order overlapping
jobs are rolled back in (a whole-document before-image would undo them)."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from ..store.db import Database
from ..store.teams import team_id, team_key, undo_id, undo_range, user_id
from ..jobs.model import JobState
from ..store.writes import insert_new
from .rows import TEAM_EXISTS, RowError, TeamRow

# Updates run as single-document commands, a few at a time: FerretDB 1.24
# stalls for good on one update command holding ~100 statements against a
# collection of 10,000 documents, and on MongoDB a handful in flight is close
# to a bulk write's speed.
UPDATES_IN_FLIGHT = 8
ROLLBACK_CHUNK = 500
# A user document a job writes has only these fields; one with any other was
# edited by something else and is never deleted by a rollback.
JOB_USER_FIELDS = frozenset({"_id", "org_id", "phone", "name", "teams", "job_id", "created_name", "created_at", "updated_at"})
# States of a creating job after which its users belong to nobody but the
# teams that still list them.
UNDONE = frozenset({JobState.TERMINATING.value, JobState.TERMINATED.value})


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


Fence = Callable[[], Any]  # an async context manager factory: JobContext.fenced


async def apply_batch(
    db: Database,
    org_id: str,
    job_id: str,
    rows: list[TeamRow],
    users: dict[str, dict[str, Any]],
    now: dt.datetime,
    fenced: Fence,
) -> Applied:
    """Creates the batch's teams and users and changes existing users; ``users``
    holds the existing documents of every user the rows name. Every write is
    sent inside ``fenced()`` (the job's lease)."""
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

    fills = {uid: changes.names[uid] for uid, doc in users.items() if uid in changes.names and not doc.get("name")}
    entries = [
        {
            "_id": undo_id(job_id, uid),
            "job_id": job_id,
            "org_id": org_id,
            "user_id": uid,
            "had_teams": "teams" in doc,
            "had_name": "name" in doc,
            "name_before": doc.get("name"),
            "name_set": fills.get(uid),
            "created_at": now,
        }
        for uid, doc in users.items()
        if uid in changes.teams and doc.get("job_id") != job_id
    ]
    async with fenced():
        applied.users_updated = await insert_new(db.undo, entries)
    # A later batch may fill the name of a user an earlier one only added to a
    # team: its undo entry learns the name first (it exists, first write won).
    late_fills = [
        partial(db.undo.update_one, {"_id": undo_id(job_id, uid), "name_set": None}, {"$set": {"name_set": name}})
        for uid, name in fills.items()
        if users[uid].get("job_id") != job_id
    ]
    await _bounded(late_fills, fenced)

    created = [
        {
            "_id": uid,
            "org_id": org_id,
            "phone": changes.phones[uid],
            "name": changes.names.get(uid),
            "teams": list(dict.fromkeys(tids)),
            "job_id": job_id,
            "created_name": changes.names.get(uid),
            "created_at": now,
            "updated_at": now,
        }
        for uid, tids in changes.teams.items()
        if uid not in users
    ]
    async with fenced():
        applied.users_created = await insert_new(db.users, created)
    async with fenced():
        applied.teams_created = await insert_new(db.teams, teams)

    updates = []
    for uid, doc in users.items():
        if uid not in changes.teams:
            continue
        update: dict[str, Any] = {"$addToSet": {"teams": {"$each": changes.teams[uid]}}}
        if uid in fills:
            # A user this job created keeps the name as its creation name, so
            # the rollback still recognises it as unedited.
            own = doc.get("job_id") == job_id
            update["$set"] = {"name": fills[uid], **({"created_name": fills[uid]} if own else {})}
        updates.append(partial(db.users.update_one, {"_id": uid}, update))
    await _bounded(updates, fenced)
    return applied


async def _bounded(calls: list[Callable[[], Awaitable[Any]]], fenced: Fence) -> None:
    for start in range(0, len(calls), UPDATES_IN_FLIGHT):
        async with fenced():
            await asyncio.gather(*(call() for call in calls[start : start + UPDATES_IN_FLIGHT]))


# -- rollback -----------------------------------------------------------------


class Undo:
    """One teams job's rollback; each step works on a chunk and can be cut
    short anywhere and run again."""

    def __init__(self, db: Database, org_id: str, job_id: str, fenced: Fence) -> None:
        self.db, self.org_id, self.job_id, self.fenced = db, org_id, job_id, fenced
        self._job_states: dict[str, str | None] = {job_id: JobState.TERMINATING.value}

    async def changed_users(self) -> tuple[int, int] | None:
        """Compensates one chunk of the existing users the job changed, then drops
        their undo entries; None when none are left. Returns (restored, deleted):
        deleted are users another (undone) job created that are now empty."""
        entries = await self.db.undo.find({"_id": undo_range(self.job_id)}).sort("_id", 1).limit(ROLLBACK_CHUNK).to_list(None)
        if not entries:
            return None
        current = await find_by_ids(self.db.users, (e["user_id"] for e in entries))
        deleted = 0
        for entry in entries:
            doc = current.get(entry["user_id"])
            if doc is None:
                continue
            doc = await self._compensate(doc, entry)
            deleted += await self._delete_if_abandoned(doc)
        async with self.fenced():
            await self.db.undo.delete_many({"_id": {"$in": [e["_id"] for e in entries]}})
        return len(entries) - deleted, deleted

    async def created_users(self, after: str) -> tuple[str, int, int] | None:
        """Takes the job's teams out of one chunk (by _id, after ``after``) of the
        users it created and deletes those left empty and unedited; None when
        none are left. Returns (last _id, deleted, kept): a user another job has
        since added to a team, or someone edited, is kept without this job's teams."""
        docs = (
            await self.db.users.find({"org_id": self.org_id, "job_id": self.job_id, "_id": {"$gt": after}})
            .sort("_id", 1)
            .limit(ROLLBACK_CHUNK)
            .to_list(None)
        )
        if not docs:
            return None
        deleted = 0
        for doc in docs:
            doc = await self._compensate(doc, None)
            deleted += await self._delete_if_abandoned(doc)
        return docs[-1]["_id"], deleted, len(docs) - deleted

    async def teams(self) -> int | None:
        """Deletes one chunk of the teams the job created; None when none are left."""
        return await _delete_chunk(self.db.teams, {"org_id": self.org_id, "job_id": self.job_id}, self.fenced)

    async def _compensate(self, doc: dict[str, Any], entry: dict[str, Any] | None) -> dict[str, Any]:
        """Undoes what this job did to one user, each change only where it still
        holds the job's value; returns the user as it is now."""
        db, uid = self.db, doc["_id"]
        listed = doc.get("teams") or []
        ours = [t["_id"] async for t in db.teams.find({"_id": {"$in": listed}, "job_id": self.job_id}, {"_id": 1})] if listed else []
        async with self.fenced():
            if ours:
                await db.users.update_one({"_id": uid}, {"$pullAll": {"teams": ours}})
            if entry is not None:
                if entry.get("name_set") is not None:
                    restore = {"$set": {"name": entry["name_before"]}} if entry["had_name"] else {"$unset": {"name": ""}}
                    await db.users.update_one({"_id": uid, "name": entry["name_set"]}, restore)
                if not entry["had_teams"]:
                    await db.users.update_one({"_id": uid, "teams": []}, {"$unset": {"teams": ""}})
            return await db.users.find_one({"_id": uid}) or {"_id": uid, "teams": ["(deleted)"]}

    async def _delete_if_abandoned(self, doc: dict[str, Any]) -> int:
        """Deletes a user a job created once its last team is gone, if the creating
        job is this one or is itself undone, and nothing else edited the user.
        The delete's filter pins what was read, so a concurrent change keeps it."""
        creator = doc.get("job_id")
        if not creator or doc.get("teams") != [] or set(doc) - JOB_USER_FIELDS:
            return 0
        if doc.get("name") != doc.get("created_name"):
            return 0
        if creator not in self._job_states:
            job = await self.db.jobs.find_one({"_id": creator}, {"state": 1})
            self._job_states[creator] = job["state"] if job else None
        if self._job_states[creator] not in UNDONE:
            return 0
        async with self.fenced():
            result = await self.db.users.delete_one({"_id": doc["_id"], "teams": [], "name": doc.get("name"), "job_id": creator})
        return result.deleted_count


async def _delete_chunk(collection: AsyncCollection, query: dict[str, Any], fenced: Fence) -> int | None:
    """Deletes up to ROLLBACK_CHUNK documents matching ``query`` (bounded, for
    progress and for FerretDB's limit on one delete); None when none match."""
    ids = [d["_id"] async for d in collection.find(query, {"_id": 1}).limit(ROLLBACK_CHUNK)]
    if not ids:
        return None
    async with fenced():
        result = await collection.delete_many({"_id": {"$in": ids}})
    return result.deleted_count


async def drop_undo_log(db: Database, job_id: str) -> None:
    """Deletes a completed job's undo entries (it can no longer be terminated)."""
    while await _delete_chunk(db.undo, {"_id": undo_range(job_id)}, _unfenced) is not None:
        pass


@contextlib.asynccontextmanager
async def _unfenced() -> AsyncIterator[None]:
    """For cleanup after the job completed: nothing to fence."""
    yield
