"""The teams write path and its undo, step by step against the real database:
a batch replayed after a crash, a rollback cut short and run again."""
from __future__ import annotations

import datetime as dt

from bson import ObjectId

from service.csvio.records import Record
from service.store.teams import team_id, undo_id, user_id
from service.teams import batch
from service.teams.batch import apply_batch, delete_created_users, delete_teams, find_by_ids, restore_users, row_users
from service.teams.rows import RowParser, TeamRow

from ..helpers import manager_phone, member_phone, post_teams, sheet, snapshot, team_rows, wait_for_state

ORG = "default"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
EXISTING = {
    "_id": user_id(ORG, manager_phone(2)),
    "org_id": ORG,
    "phone": manager_phone(2),
    "name": None,
    "teams": ["default/old"],
}


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
    return await apply_batch(db, ORG, job_id, rows, users, NOW)


async def rollback(db, job_id: str) -> None:
    while await restore_users(db, job_id) is not None:
        pass
    after = ""
    while (chunk := await delete_created_users(db, ORG, job_id, after)) is not None:
        after = chunk[0]
    while await delete_teams(db, ORG, job_id) is not None:
        pass


async def test_a_replayed_batch_changes_nothing_and_keeps_the_first_before_image(db):
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
    assert entry["before"] == EXISTING
    changed = await db.users.find_one({"_id": EXISTING["_id"]})
    assert changed["name"] == "Manager 2" and changed["last_job_id"] == job_id
    assert changed["teams"] == ["default/old", team_id(ORG, "Team 2")]


async def test_a_rollback_cut_short_anywhere_finishes_exactly_when_run_again(db, monkeypatch):
    await db.users.insert_many([dict(EXISTING), {"_id": user_id(ORG, member_phone(31)), "org_id": ORG, "name": "M"}])
    before = await snapshot(db)
    job_id = str(ObjectId())
    await apply(db, job_id, parsed(team_rows(3)))
    await apply(db, job_id, parsed(team_rows(3, start=4), first_row=4))
    monkeypatch.setattr(batch, "ROLLBACK_CHUNK", 2)

    # A replica dies after one chunk of each phase...
    assert await restore_users(db, job_id) == (2, 0)
    assert (await delete_created_users(db, ORG, job_id, ""))[1] == 2
    assert await delete_teams(db, ORG, job_id) == 2
    # ...and the replica that adopts the job starts the rollback over.
    await rollback(db, job_id)

    assert await snapshot(db) == before
    assert await db.undo.count_documents({}) == 0


async def test_a_failed_job_terminated_after_a_later_job_keeps_the_later_jobs_teams(client, db):
    await db.users.insert_one(dict(EXISTING))
    rows = team_rows(4)
    rows[3][2] = "not a phone"
    failed = await post_teams(client, sheet(rows), on_error="fail", batch_size=1)
    await wait_for_state(client, failed["id"], "failed")
    # The later job adds manager 2 (existing) and member 11 (created by the failed job) to its team.
    later = await post_teams(client, sheet([["Later", "Manager 2", manager_phone(2), member_phone(11)]]))
    await wait_for_state(client, later["id"], "completed")

    resp = await client.post(f"/api/v1/jobs/{failed['id']}/terminate")
    assert resp.status == 200
    done = await wait_for_state(client, failed["id"], "terminated")

    assert [t["name"] async for t in db.teams.find()] == ["Later"]
    manager = await db.users.find_one({"_id": EXISTING["_id"]})
    assert manager["teams"] == ["default/old", team_id(ORG, "Later")]
    member = await db.users.find_one({"_id": user_id(ORG, member_phone(11))})
    assert member["teams"] == [team_id(ORG, "Later")]
    assert done["progress"]["users_kept"] == 2
    assert await db.users.count_documents({"job_id": failed["id"]}) == 1, "only the user the later job uses is kept"
