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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from ..jobs.fence import ReadOnly, Teams
from ..store.teams import (
    CREATED_TEAM,
    CREATED_USER,
    created_id,
    created_range,
    team_id,
    team_key,
    undo_id,
    undo_range,
    user_id,
)
from .rows import TEAM_EXISTS, RowError, TeamRow

# Updates run as single-document commands, a few at a time: FerretDB 1.24
# stalls for good on one update command holding ~100 statements against a
# collection of 10,000 documents, and on MongoDB a handful in flight is close
# to a bulk write's speed.
UPDATES_IN_FLIGHT = 8
# Users a rollback compensates between two checkpoints: its progress moves
# every few seconds even on a slow database.
ROLLBACK_CHUNK = 100
# A user document a job writes has only these fields; one with any other was
# edited by something else and is never deleted by a rollback.
# (``jobs`` marks the jobs that touched it and have not yet been rolled back;
# ``orphaned`` says its creating job was undone while other teams still listed it.)
JOB_USER_FIELDS = frozenset(
    {"_id", "org_id", "phone", "name", "teams", "job_id", "created_name", "created_at", "updated_at", "jobs", "orphaned"}
)


Readable = AsyncCollection | ReadOnly


async def find_by_ids(collection: Readable, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
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
        if doc is not None and job_id is not None and doc.get("job_id") == job_id:  # a team this job created
            if doc.get("row") == row.row:
                keep.append(row)
                continue
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
    teams: Readable,
    users: Readable,
    org_id: str,
    job_id: str | None,
    parsed: list[TeamRow | RowError],
    seen: dict[str, int],
) -> tuple[list[TeamRow], list[RowError], dict[str, dict[str, Any]]]:
    """The database's part of checking a batch, shared by the job and the dry run:
    the rows whose team may be created, the rows refused because their team
    exists (see screen()), and the existing users that the batch's rows name."""
    rows = [p for p in parsed if isinstance(p, TeamRow)]
    existing = await find_by_ids(teams, (team_id(org_id, r.team) for r in rows))
    found = await find_by_ids(users, (uid for r in rows for uid in row_users(org_id, r)))
    rows, rejected = screen(rows, existing, seen, org_id, job_id)
    return rows, rejected, found


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
    teams: Teams,
    org_id: str,
    rows: list[TeamRow],
    users: dict[str, dict[str, Any]],
    now: dt.datetime,
) -> Applied:
    """Creates the batch's teams and users and changes existing users; ``users``
    holds the existing documents of every user the rows name. Every write goes
    through the job's fenced ``teams`` handle."""
    job_id = teams.job_id
    applied = Applied()
    if not rows:
        return applied
    changes = _Changes()
    new_teams: list[dict[str, Any]] = []
    for row in rows:
        tid = team_id(org_id, row.team)
        manager, *members = row_users(org_id, row)
        for uid, phone in zip((manager, *members), (row.manager_phone, *row.members)):
            changes.teams[uid].append(tid)
            changes.phones[uid] = phone
        if row.manager_name:
            changes.names.setdefault(manager, row.manager_name)
        new_teams.append(
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
    applied.users_updated = await teams.insert_undo(entries)
    # A later batch may fill the name of a user an earlier one only added to a
    # team: its undo entry learns the name first (it exists, first write won).
    await teams.concurrently(
        (teams.note_name(uid, name) for uid, name in fills.items() if users[uid].get("job_id") != job_id), UPDATES_IN_FLIGHT
    )

    created: list[dict[str, Any]] = [
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

    # What the job is about to create is listed first (by _id: its rollback walks
    # the list rather than asking users and teams for the job's documents).
    def listed(kind: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"_id": created_id(job_id, kind, d["_id"]), "job_id": job_id, "org_id": org_id, "ref": d["_id"], "created_at": now}
            for d in docs
        ]

    await teams.insert_undo(listed(CREATED_USER, created) + listed(CREATED_TEAM, new_teams))
    applied.users_created = await teams.insert_users(created)
    applied.teams_created = await teams.insert_teams(new_teams)

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
        updates.append(teams.change_user(uid, update))
    await teams.concurrently(updates, UPDATES_IN_FLIGHT)
    return applied


# -- rollback -----------------------------------------------------------------


async def _each(items: list[Any], call: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    """``call`` on each item, UPDATES_IN_FLIGHT at a time (each item is another
    user, so their single-document writes are independent): a rollback's
    writes overlap their round trips as the job's did."""
    results: list[Any] = []
    for start in range(0, len(items), UPDATES_IN_FLIGHT):
        results += await asyncio.gather(*(call(item) for item in items[start : start + UPDATES_IN_FLIGHT]))
    return results


class Undo:
    """One teams job's rollback; each step works on a chunk and can be cut
    short anywhere and run again. Every write goes through the job's fenced
    ``teams`` handle, so each names the job."""

    def __init__(self, teams: Teams, org_id: str) -> None:
        self.handle, self.org_id, self.job_id = teams, org_id, teams.job_id

    async def changed_users(self) -> tuple[int, int] | None:
        """Compensates one chunk of the existing users the job changed, then drops
        their undo entries; None when none are left. Returns (restored, deleted):
        deleted are users another (undone) job created that are now empty."""
        undo, users = self.handle.undo_collection, self.handle.users_collection
        entries = await undo.find({"_id": undo_range(self.job_id)}).sort("_id", 1).limit(ROLLBACK_CHUNK).to_list(None)
        if not entries:
            return None
        current = await find_by_ids(users, (e["user_id"] for e in entries))
        ours = await self._ours(current.values())

        async def one(entry: dict[str, Any]) -> int:
            doc = current.get(entry["user_id"])
            return 0 if doc is None else (await self._settle(doc, entry, ours))[0]

        deleted = sum(await _each(entries, one))
        await self.handle.delete_undo([e["_id"] for e in entries])
        return len(entries) - deleted, deleted

    async def listed_users(self) -> tuple[int, int] | None:
        """Takes the job's teams out of one chunk of the users it created (found
        through its list of them, by _id) and deletes those left empty and
        unedited; None when none are left. Returns (deleted, kept): a user
        another job has since added to a team, or someone edited, is kept
        without this job's teams (and marked orphaned)."""
        entries = await self._listed(CREATED_USER)
        if not entries:
            return None
        current = await find_by_ids(self.handle.users_collection, (e["ref"] for e in entries))
        # A listed user that is not the job's was never created by it (the batch
        # stopped between the list and the insert).
        created = [d for d in current.values() if d.get("job_id") == self.job_id]
        ours = await self._ours(created)
        # Most are untouched since the job created them: deleted in one command.
        untouched = [d for d in created if self._untouched(d, ours)]
        deleted = await self.handle.delete_as_read(untouched)
        rest = [d for d in created if not self._untouched(d, ours)]
        if deleted < len(untouched):
            rest += list((await find_by_ids(self.handle.users_collection, (d["_id"] for d in untouched))).values())

        async def one(doc: dict[str, Any]) -> int:
            gone, uid = await self._settle(doc, None, ours)
            if not gone and uid is not None:
                await self.handle.orphan_user(uid)
            return gone

        deleted += sum(await _each(rest, one))
        await self.handle.delete_created(CREATED_USER, [e["_id"] for e in entries])
        return deleted, len(created) - deleted

    async def _ours(self, docs: Iterable[dict[str, Any]]) -> set[str]:
        """Which of the teams these users list are the job's: one read."""
        listed = list({t for doc in docs for t in doc.get("teams") or []})
        if not listed:
            return set()
        query = {"_id": {"$in": listed}, "job_id": self.job_id}
        return {t["_id"] async for t in self.handle.teams_collection.find(query, {"_id": 1})}

    async def _settle(self, doc: dict[str, Any], entry: dict[str, Any] | None, ours: set[str]) -> tuple[int, str | None]:
        """Compensates one user (``entry``: its undo entry; None for a user the
        job created) and deletes it if that leaves it abandoned. When the job's
        mark is the user's only one, that is one write pinned on the user as read
        (a user the job created and nothing else touched is simply deleted);
        otherwise, or when the user changed meanwhile, the steps of
        _compensate(). Returns (deleted, the user's _id if it still exists)."""
        uid = doc["_id"]
        teams = doc.get("teams") or []
        mine = [t for t in teams if t in ours]
        if doc.get("jobs") == [self.job_id] and "teams" in doc:
            if entry is None and self._untouched(doc, ours):
                if await self.handle.delete_as_read([doc]):
                    return 1, None
            else:
                pins, update, after = self._plan(doc, entry, mine)
                if await self.handle.settle(uid, pins, update):
                    if self._abandoned(after):
                        return await self.handle.delete_user(uid, after.get("name"), after["job_id"]), uid
                    return 0, uid
        now = await self._compensate(doc, entry)
        gone = await self._delete_if_abandoned(now)
        return gone, (None if gone or now.get("_id") is None else uid)

    def _untouched(self, doc: dict[str, Any], ours: set[str]) -> bool:
        """A user the job created that nothing else has touched: only the job's
        mark, only its teams, and once those go, abandoned."""
        teams = doc.get("teams")
        if doc.get("job_id") != self.job_id or doc.get("jobs") != [self.job_id] or teams is None:
            return False
        return self._abandoned({**doc, "teams": [t for t in teams if t not in ours], "jobs": None})

    def _plan(
        self, doc: dict[str, Any], entry: dict[str, Any] | None, mine: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The one write that compensates a user whose only mark is the job's:
        its filter's pins, the update, and the user as it will be after it."""
        teams = doc.get("teams") or []
        left = [t for t in teams if t not in mine]
        pins: dict[str, Any] = {"teams": teams}
        unset: dict[str, str] = {"jobs": ""}
        update: dict[str, Any] = {}
        after = {k: v for k, v in doc.items() if k != "jobs"}
        after["teams"] = left
        if entry is not None and not entry["had_teams"] and not left:
            unset["teams"] = ""
            after.pop("teams")
        elif mine:
            update["$pullAll"] = {"teams": mine}
        if entry is not None and entry.get("name_set") is not None:
            pins["name"] = entry["name_set"]
            if entry["had_name"]:
                update["$set"] = {"name": entry["name_before"]}
                after["name"] = entry["name_before"]
            else:
                unset["name"] = ""
                after.pop("name", None)
        update["$unset"] = unset
        return pins, update, after

    async def listed_teams(self) -> int | None:
        """Deletes one chunk of the teams the job created, found through its list
        of them; None when none are left."""
        entries = await self._listed(CREATED_TEAM)
        if not entries:
            return None
        deleted = await self.handle.delete_teams([e["ref"] for e in entries])
        await self.handle.delete_created(CREATED_TEAM, [e["_id"] for e in entries])
        return deleted

    async def _listed(self, what: str) -> list[dict[str, Any]]:
        query = {"_id": created_range(self.job_id, what)}
        return await self.handle.undo_collection.find(query).sort("_id", 1).limit(ROLLBACK_CHUNK).to_list(None)

    async def _created_user(self, doc: dict[str, Any]) -> tuple[int, int]:
        doc = await self._compensate(doc, None)
        gone = await self._delete_if_abandoned(doc)
        if not gone and doc.get("_id") is not None:
            await self.handle.orphan_user(doc["_id"])
        return gone, 1 - gone

    async def created_users(self, after: str) -> tuple[str, int, int] | None:
        """Takes the job's teams out of one chunk (by _id, after ``after``) of the
        users it created and deletes those left empty and unedited; None when
        none are left. Returns (last _id, deleted, kept): a user another job has
        since added to a team, or someone edited, is kept without this job's teams."""
        docs = (
            await self.handle.users_collection.find({"org_id": self.org_id, "job_id": self.job_id, "_id": {"$gt": after}})
            .sort("_id", 1)
            .limit(ROLLBACK_CHUNK)
            .to_list(None)
        )
        if not docs:
            return None
        done = await _each(docs, self._created_user)
        deleted = sum(d for d, _ in done)
        return docs[-1]["_id"], deleted, len(docs) - deleted

    async def teams(self) -> int | None:
        """Deletes one chunk of the teams the job created; None when none are left."""
        query = {"org_id": self.org_id, "job_id": self.job_id}
        ids = [d["_id"] async for d in self.handle.teams_collection.find(query, {"_id": 1}).limit(ROLLBACK_CHUNK)]
        if not ids:
            return None
        return await self.handle.delete_teams(ids)

    async def _compensate(self, doc: dict[str, Any], entry: dict[str, Any] | None) -> dict[str, Any]:
        """Undoes what this job did to one user, each change only where it still
        holds the job's value and the user still carries the job's mark;
        returns the user as it is now."""
        handle, uid = self.handle, doc["_id"]
        listed = doc.get("teams") or []
        query = {"_id": {"$in": listed}, "job_id": self.job_id}
        ours = [t["_id"] async for t in handle.teams_collection.find(query, {"_id": 1})] if listed else []
        if ours:
            await handle.pull_teams(uid, ours)
        if entry is not None:
            if entry.get("name_set") is not None:
                restore = {"$set": {"name": entry["name_before"]}} if entry["had_name"] else {"$unset": {"name": ""}}
                await handle.restore_name(uid, entry["name_set"], restore)
            if not entry["had_teams"]:
                await handle.drop_empty_teams(uid)
        return await handle.unmark(uid) or {"_id": None}

    async def _delete_if_abandoned(self, doc: dict[str, Any]) -> int:
        """Deletes a user a job created once its last team is gone (see _abandoned).
        The delete's filter pins what was read, so a concurrent change keeps it."""
        if not self._abandoned(doc):
            return 0
        return await self.handle.delete_user(doc["_id"], doc.get("name"), doc["job_id"])

    def _abandoned(self, doc: dict[str, Any]) -> bool:
        """A user a job created whose last team is gone, if the creating job is
        this one or was itself undone (it left the user ``orphaned``), and that
        nothing else edited."""
        creator = doc.get("job_id")
        if not creator or doc.get("teams") != [] or set(doc) - JOB_USER_FIELDS or doc.get("jobs"):
            return False
        if doc.get("name") != doc.get("created_name"):
            return False
        return creator == self.job_id or bool(doc.get("orphaned"))


async def undo_preview(teams: Readable, users: Readable, undo: Readable, org_id: str, job_id: str) -> dict[str, Any]:
    """What an undo of a completed job would do, counted now and writing nothing:
    the teams it would delete, the existing users it would compensate (its undo
    entries), and the users it created, split into those it would delete and
    those it would keep (another job's team lists them, or someone edited them:
    they survive without this job's teams, as in a terminate)."""
    ours = {t["_id"] async for t in teams.find({"org_id": org_id, "job_id": job_id}, {"_id": 1})}
    restored = await undo.count_documents({"_id": undo_range(job_id)})
    deleted = kept = 0
    async for doc in users.find({"org_id": org_id, "job_id": job_id}):
        others = [t for t in doc.get("teams") or [] if t not in ours]
        marks = [j for j in doc.get("jobs") or [] if j != job_id]
        edited = bool(set(doc) - JOB_USER_FIELDS) or doc.get("name") != doc.get("created_name")
        if others or marks or edited:
            kept += 1
        else:
            deleted += 1
    return {"teams": len(ours), "users_restored": restored, "users_deleted": deleted, "users_kept": kept}
