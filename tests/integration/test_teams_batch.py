"""The teams write path and its compensating undo, against the real database:
a batch replayed after a crash, a rollback cut short and run again, and
overlapping jobs rolled back in either order."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId

from service.csvio.records import Record
from service.jobs.fence import Fence, Teams
from service.store.teams import team_id, undo_id, user_id
from service.teams import batch
from service.teams.batch import Undo, apply_batch, find_by_ids, row_users
from service.teams.rows import RowParser, TeamRow

from ..support.helpers import (
    control,
    manager_phone,
    member_phone,
    post_teams,
    sheet,
    snapshot,
    team_rows,
    wait_for_state,
    wait_until_processed,
    wait_until_settled,
)

ORG = "default"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
EXISTING = {
    "_id": user_id(ORG, manager_phone(2)),
    "org_id": ORG,
    "phone": manager_phone(2),
    "name": None,
    "teams": ["default/old"],
}


class HeldLease:
    """A lease that is always valid: these tests drive the write path directly."""

    async def lease_left(self) -> float:
        return 30.0

    async def reachable(self) -> bool:
        return True


def handle(db, job_id: str) -> Teams:
    return Teams(db.teams, db.users, db.undo, Fence(HeldLease()), job_id)


def parsed(rows: list[list[str]], first_row: int = 1) -> list[TeamRow]:
    parser = RowParser({"team": 0, "manager_name": 1, "manager_phone": 2, "members": 3}, 4, "US")
    out = []
    for offset, fields in enumerate(rows):
        row = parser.parse(Record(first_row + offset, first_row + offset + 1, fields, None))
        assert isinstance(row, TeamRow)
        out.append(row)
    return out


async def apply(db, job_id: str, rows: list[TeamRow]) -> batch.Applied:
    users = await find_by_ids(db.users, (u for r in rows for u in row_users(ORG, r)))
    return await apply_batch(handle(db, job_id), ORG, rows, users, NOW)


async def rollback(db, job_id: str) -> None:
    undo = Undo(handle(db, job_id), ORG)
    while await undo.changed_users() is not None:
        pass
    while await undo.listed_users() is not None:
        pass
    while await undo.listed_teams() is not None:
        pass


async def users_and_teams(db) -> dict:
    """The snapshot without the jobs' own bookkeeping collection."""
    return await snapshot(db)


async def test_a_replayed_batch_changes_nothing_and_the_undo_entry_records_only_what_the_job_did(db):
    await db.users.insert_one(dict(EXISTING))
    job_id = str(ObjectId())
    rows = parsed(team_rows(3))

    first = await apply(db, job_id, rows)
    after_first = await snapshot(db)
    replay = await apply(db, job_id, rows)

    assert await snapshot(db) == after_first
    assert (first.teams_created, first.users_created, first.users_updated) == (3, 8, 1)
    assert (replay.teams_created, replay.users_created, replay.users_updated) == (0, 0, 0)
    entry = await db.undo.find_one({"_id": undo_id(job_id, EXISTING["_id"])})
    assert (entry["had_teams"], entry["had_name"], entry["name_before"], entry["name_set"]) == (True, True, None, "Manager 2")
    changed = await db.users.find_one({"_id": EXISTING["_id"]})
    assert changed == {**EXISTING, "name": "Manager 2", "teams": ["default/old", team_id(ORG, "Team 2")], "jobs": [job_id]}


@pytest.mark.parametrize("phase", ["changed users", "created users", "teams"])
async def test_a_rollback_cut_short_in_any_phase_finishes_exactly_when_run_again(db, monkeypatch, phase):
    """The phases run in order (the runner finishes one before the next, and a
    replica that adopts the job resumes the one it reached); a replica dies
    after one chunk of ``phase``, and the next runs the rollback again."""
    await db.users.insert_many([dict(EXISTING), {"_id": user_id(ORG, member_phone(31)), "org_id": ORG, "name": "M"}])
    before = await snapshot(db)
    job_id = str(ObjectId())
    await apply(db, job_id, parsed(team_rows(3)))
    await apply(db, job_id, parsed(team_rows(3, start=4), first_row=4))
    monkeypatch.setattr(batch, "ROLLBACK_CHUNK", 2)
    undo = Undo(handle(db, job_id), ORG)
    if phase == "changed users":
        assert await undo.changed_users() == (2, 0)
    else:
        while await undo.changed_users() is not None:
            pass
        if phase == "created users":
            assert await undo.listed_users() == (2, 0)
        else:
            while await undo.listed_users() is not None:
                pass
            assert await undo.listed_teams() == 2
    await rollback(db, job_id)

    assert await snapshot(db) == before
    assert await db.undo.count_documents({}) == 0


async def test_two_overlapping_jobs_rolled_back_in_either_order_leave_no_trace(db):
    for first_undone in ("j1", "j2"):
        await db.users.delete_many({})
        await db.teams.delete_many({})
        await db.users.insert_one(dict(EXISTING))
        before = await snapshot(db)
        j1, j2 = str(ObjectId()), str(ObjectId())
        # J1 creates manager 1 and members 11, 12; names the existing manager 2.
        await apply(db, j1, parsed(team_rows(2)))
        # J2 overlaps: the same existing user, a user J1 created, new ones.
        await apply(
            db,
            j2,
            parsed(
                [
                    ["Later", "Someone", manager_phone(2), f"{member_phone(11)};{member_phone(90)}"],
                    ["Other", "Manager 1", manager_phone(1), ""],
                ]
            ),
        )
        order = (j1, j2) if first_undone == "j1" else (j2, j1)
        for job_id in order:
            await rollback(db, job_id)
        assert await snapshot(db) == before, f"rolled back {first_undone} first"


async def test_a_name_edited_by_someone_else_between_job_and_rollback_is_kept(db):
    await db.users.insert_one(dict(EXISTING))
    job_id = str(ObjectId())
    await apply(db, job_id, parsed(team_rows(2)))
    # Between the job and its rollback, an admin renames two users directly:
    # the existing one the job named, and one the job created.
    await db.users.update_one({"_id": EXISTING["_id"]}, {"$set": {"name": "Patricia"}})
    created = user_id(ORG, manager_phone(1))
    await db.users.update_one({"_id": created}, {"$set": {"name": "Renamed"}})

    await rollback(db, job_id)

    assert await db.users.find_one({"_id": EXISTING["_id"]}) == {**EXISTING, "name": "Patricia"}
    kept = await db.users.find_one({"_id": created})
    assert kept["name"] == "Renamed" and kept["teams"] == [], "an edited user is kept, without the job's teams"
    assert await db.teams.count_documents({}) == 0


async def test_a_failed_teams_job_terminated_while_another_runs_and_then_that_one_leave_no_trace(client, db):
    """J1 fails part-way, J2 (same org, overlapping users) starts and is paused;
    J1 is terminated, then J2 (J1's rollback runs once J2's is done with the
    org's slot): teams and users end exactly as before both, and
    an edit made directly between the jobs and the rollbacks is kept."""
    bystander = {"_id": user_id(ORG, member_phone(500)), "org_id": ORG, "phone": member_phone(500), "name": "Bea", "teams": []}
    await db.users.insert_many([dict(EXISTING), dict(bystander)])
    before = await snapshot(db)
    rows = team_rows(30)
    rows[25][2] = "not a phone"
    j1 = await post_teams(client, sheet(rows), on_error="fail", batch_size=5)
    await wait_for_state(client, j1["id"], "failed")

    overlap = [
        [f"Second {i}", f"Manager {i}", manager_phone(i), f"{member_phone(i * 10 + 1)};{member_phone(500)}"]
        for i in range(1, 400)
    ]
    j2 = await post_teams(client, sheet(overlap), batch_size=5)
    await wait_until_processed(client, j2["id"], at_least=40)
    await control(client, j2["id"], "pause")
    await wait_until_settled(client, j2["id"])
    # Someone renames the bystander directly (J2 added it to its teams).
    await db.users.update_one({"_id": bystander["_id"]}, {"$set": {"name": "Beatrice"}})

    # J1's rollback waits for the org's teams slot, which paused J2 holds
    # (tests/engine/test_review_findings.py shows it waiting); J2's terminate
    # lets it go, and both roll back.
    await control(client, j1["id"], "terminate")
    await control(client, j2["id"], "terminate")
    await wait_for_state(client, j2["id"], "terminated")
    await wait_for_state(client, j1["id"], "terminated")

    after = await snapshot(db)
    expected = [{**u, "name": "Beatrice"} if u["_id"] == bystander["_id"] else u for u in before["users"]]
    assert after == {"teams": before["teams"], "users": expected}


async def test_a_job_from_before_the_list_of_what_it_created_still_rolls_back_by_its_tags(db):
    """A job created before jobs listed what they created (no ``created_list``
    param, no "<job>+" entries) is rolled back by its job_id tags instead."""
    await db.users.insert_many([dict(EXISTING)])
    before = await snapshot(db)
    job_id = str(ObjectId())
    await apply(db, job_id, parsed(team_rows(3)))
    await db.undo.delete_many({"_id": {"$gte": f"{job_id}+", "$lt": f"{job_id},"}})  # as an older job wrote it
    undo = Undo(handle(db, job_id), ORG)
    while await undo.changed_users() is not None:
        pass
    assert await undo.listed_users() is None
    after = ""
    while (chunk := await undo.created_users(after)) is not None:
        after = chunk[0]
    while await undo.teams() is not None:
        pass
    assert await snapshot(db) == before
    assert await db.undo.count_documents({}) == 0
