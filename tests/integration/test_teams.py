"""Bulk team creation through the real HTTP app against the real database."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import aiohttp

from service.store.teams import team_id, undo_range, user_id

from ..support.helpers import (
    control,
    get_job,
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
SLOW = {"batch_size": 5}
EARLIER = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)


async def seed_existing(db) -> None:
    """What the org had before the job: a named manager of an older team, a
    member without a name, and an unrelated user."""
    await db.users.insert_many(
        [
            {
                "_id": user_id(ORG, manager_phone(3)),
                "org_id": ORG,
                "phone": manager_phone(3),
                "name": "Manager 3",
                "teams": [team_id(ORG, "Old team")],
                "created_at": EARLIER,
            },
            {
                "_id": user_id(ORG, member_phone(52)),
                "org_id": ORG,
                "phone": member_phone(52),
                "name": None,
                "teams": [],
                "created_at": EARLIER,
            },
            {"_id": user_id(ORG, "+14155550000"), "org_id": ORG, "phone": "+14155550000", "name": "Bystander"},
        ]
    )
    await db.teams.insert_one(
        {
            "_id": team_id(ORG, "Old team"),
            "org_id": ORG,
            "name": "Old team",
            "manager_id": user_id(ORG, manager_phone(3)),
            "member_ids": [],
        }
    )


async def test_a_completed_job_creates_exactly_the_expected_teams_and_users(client, db):
    await seed_existing(db)
    rows = team_rows(6)
    rows[5][2] = "202 555 0052"  # the unnamed member 52 (also on team 5) manages team 6
    job = await post_teams(client, sheet(rows))
    assert job["kind"] == "teams" and job["progress"]["total"] == 6

    done = await wait_for_state(client, job["id"], "completed")

    progress = done["progress"]
    assert progress["processed"] == 6 and progress["failed"] == 0 and done["errors"] == []
    assert progress["teams_created"] == 6
    # Managers 1-5 and members 11-62, of which manager 3 and member 52 existed.
    assert progress["users_created"] == 15
    assert progress["users_updated"] == 2
    teams = {t["name"]: t async for t in db.teams.find({"job_id": job["id"]})}
    assert sorted(teams) == [f"Team {i}" for i in range(1, 7)]
    assert teams["Team 2"]["manager_id"] == user_id(ORG, manager_phone(2))
    assert teams["Team 2"]["member_ids"] == [user_id(ORG, member_phone(21)), user_id(ORG, member_phone(22))]
    assert teams["Team 2"]["line"] == 3 and teams["Team 2"]["org_id"] == ORG

    created = {u["_id"]: u async for u in db.users.find({"job_id": job["id"]})}
    assert len(created) == 15
    manager_one = created[user_id(ORG, manager_phone(1))]
    assert manager_one["phone"] == "+12015550001", "phones are stored in E.164"
    assert manager_one["name"] == "Manager 1"
    assert manager_one["teams"] == [team_id(ORG, "Team 1")]
    assert created[user_id(ORG, member_phone(11))]["name"] is None

    kept = await db.users.find_one({"_id": user_id(ORG, manager_phone(3))})
    assert kept["name"] == "Manager 3" and "job_id" not in kept
    assert kept["teams"] == [team_id(ORG, "Old team"), team_id(ORG, "Team 3")]
    member = await db.users.find_one({"_id": user_id(ORG, member_phone(52))})
    assert member["teams"] == [team_id(ORG, "Team 5"), team_id(ORG, "Team 6")]
    assert member["name"] == "Manager 6", "a missing name is filled in"
    assert teams["Team 6"]["manager_id"] == user_id(ORG, member_phone(52))
    assert await db.users.count_documents({}) == 15 + 3
    # The upload goes in the job's cleanup, just after "completed" is written;
    # the before-images stay for an undo, until JOB_UNDO_DAYS (tests/integration/test_undo.py).
    deadline = time.monotonic() + 30
    while await db.db["uploads.files"].count_documents({}):
        assert time.monotonic() < deadline, "a completed job keeps no upload"
        await asyncio.sleep(0.05)
    assert await db.undo.count_documents({"_id": undo_range(job["id"])}) == 2


async def test_terminate_after_partial_progress_leaves_teams_and_users_as_before(client, db):
    await seed_existing(db)
    before = await snapshot(db)
    rows = team_rows(400)
    # Rows early and late touch the users that existed.
    rows[1][2] = "(201) 555-0003"
    rows[1][3] = "202-555-0052"
    rows[390][3] = "202-555-0052;415-555-0000"
    job = await post_teams(client, sheet(rows), **SLOW)
    await wait_until_processed(client, job["id"], at_least=20)

    await control(client, job["id"], "terminate")
    done = await wait_for_state(client, job["id"], "terminated")

    assert await snapshot(db) == before
    assert 0 < done["progress"]["teams_deleted"] < 400
    assert done["progress"]["users_restored"] == 2
    assert await db.undo.count_documents({}) == 0
    assert await db.db["uploads.files"].count_documents({}) == 0


async def test_terminate_while_paused_leaves_teams_and_users_as_before(client, db):
    await seed_existing(db)
    before = await snapshot(db)
    rows = team_rows(400)
    rows[0][2] = "+1 201 555 0003"
    job = await post_teams(client, sheet(rows), **SLOW)
    await wait_until_processed(client, job["id"], at_least=10)
    await control(client, job["id"], "pause")
    paused = await wait_until_settled(client, job["id"])
    assert await db.teams.count_documents({"job_id": job["id"]}) == paused["progress"]["teams_created"]

    await control(client, job["id"], "terminate")
    await wait_for_state(client, job["id"], "terminated")

    assert await snapshot(db) == before


async def test_pause_stops_creating_teams_and_resume_finishes_each_team_once(client, db):
    job = await post_teams(client, sheet(team_rows(300)), **SLOW)
    await wait_until_processed(client, job["id"], at_least=10)
    await control(client, job["id"], "pause")
    settled = await wait_until_settled(client, job["id"])
    count = await db.teams.count_documents({"job_id": job["id"]})
    assert count == settled["progress"]["teams_created"] < 300

    await control(client, job["id"], "resume")
    done = await wait_for_state(client, job["id"], "completed")

    assert done["progress"]["teams_created"] == 300
    assert await db.teams.count_documents({"job_id": job["id"]}) == 300
    assert await db.users.count_documents({"job_id": job["id"]}) == 900


async def test_each_kind_of_bad_row_is_a_row_error_with_its_line(client, db):
    await seed_existing(db)
    rows = team_rows(9)
    rows[0][2] = "555-01"  # line 2: not a phone number
    rows[1][3] = "202-555-0021;call me"  # line 3: a member's phone
    rows[2][0] = "  "  # line 4: no team name
    rows[3][0] = "old TEAM"  # line 5: exists in the org (names compare without case)
    rows[5][0] = "Team 5"  # line 7: already on line 6 of this file
    rows[6] = rows[6] + ["surplus"]  # line 8: extra column
    rows[7] = rows[7][:2]  # line 9: missing columns
    job = await post_teams(client, sheet(rows))

    done = await wait_for_state(client, job["id"], "completed")

    errors = {e["line"]: e for e in done["errors"]}
    assert sorted(errors) == [2, 3, 4, 5, 7, 8, 9]
    assert errors[2]["kind"] == "invalid_phone" and "'555-01'" in errors[2]["message"]
    assert errors[3]["kind"] == "invalid_phone" and "member" in errors[3]["message"]
    assert errors[4]["kind"] == "missing_team"
    assert errors[5]["kind"] == "team_exists" and "Old team" in errors[5]["message"]
    assert errors[7]["kind"] == "team_exists" and "line 6" in errors[7]["message"]
    assert errors[8]["kind"] == "extra_columns"
    assert errors[9]["kind"] == "missing_columns"
    assert done["progress"]["failed"] == 7
    assert done["progress"]["failed_by_kind"] == {
        "invalid_phone": 2,
        "missing_team": 1,
        "team_exists": 2,
        "extra_columns": 1,
        "missing_columns": 1,
    }
    names = sorted([t["name"] async for t in db.teams.find({"job_id": job["id"]})])
    assert names == ["Team 5", "Team 9"]
    assert await db.users.count_documents({"_id": user_id(ORG, manager_phone(1))}) == 0, "a bad row creates no user"


async def test_on_error_fail_stops_at_the_first_bad_row_and_terminate_undoes_the_rest(client, db):
    await seed_existing(db)
    before = await snapshot(db)
    rows = team_rows(12)
    rows[2][2] = "(201) 555-0003"  # touches an existing user before the failure
    rows[6][2] = "not a phone"  # line 8
    job = await post_teams(client, sheet(rows), on_error="fail", batch_size=4)

    failed = await wait_for_state(client, job["id"], "failed")

    assert "line 8" in failed["error"] and "on_error=fail" in failed["error"]
    names = sorted([t["name"] async for t in db.teams.find({"job_id": job["id"]})])
    assert names == sorted(f"Team {i}" for i in range(1, 7))
    # Manager 3 (line 4) and member 52 (line 6) existed: their before-images stay,
    # because a failed job can still be terminated.
    assert await db.undo.count_documents({"_id": undo_range(job["id"])}) == 2

    await control(client, job["id"], "terminate")
    await wait_for_state(client, job["id"], "terminated")
    assert await snapshot(db) == before


async def test_a_header_without_the_required_columns_is_refused_and_nothing_is_kept(client, db):
    for header, needle in (
        (("team", "manager_name"), "manager_phone"),
        (("team", "manager_name", "manager_phone", "email"), "'email'"),
        (("Team", "Manager Name", "manager-phone", "TEAM"), "twice"),
    ):
        problem = await post_teams(client, sheet([["a", "b", "c", "d"]], header=header), expect=400)
        assert needle in problem["detail"], problem
    assert await db.db["uploads.files"].count_documents({}) == 0
    assert await db.jobs.count_documents({}) == 0

    resp = await client.post("/api/v1/jobs/teams", params={"region": "XX"}, data=sheet(team_rows(1)))
    assert resp.status == 400 and resp.content_type == "application/problem+json"
    resp = await client.post("/api/v1/jobs/teams", params={"dry_run": "maybe"}, data=sheet(team_rows(1)))
    assert resp.status == 400


async def test_headers_are_matched_without_case_and_the_region_reads_local_numbers(client, db):
    body = sheet([["Berlin", "Jana", "030 901820"]], header=("Team", "Manager Name", "MANAGER-PHONE"))
    job = await post_teams(client, body, region="de")
    await wait_for_state(client, job["id"], "completed")
    team = await db.teams.find_one({"job_id": job["id"]})
    assert team["manager_id"] == user_id(ORG, "+4930901820")
    assert team["member_ids"] == []


async def test_a_second_teams_job_of_the_org_waits_for_the_first(client, db):
    first = await post_teams(client, sheet(team_rows(300)), **SLOW)
    await wait_until_processed(client, first["id"])
    second = await post_teams(client, sheet(team_rows(3, start=501)))
    assert (await get_job(client, second["id"]))["state"] == "queued"

    await control(client, first["id"], "terminate")
    done = await wait_for_state(client, second["id"], "completed")
    assert done["progress"]["teams_created"] == 3


async def test_a_sheet_sent_as_a_multipart_file_field_creates_its_teams(client, db):
    form = aiohttp.FormData()
    form.add_field("file", sheet(team_rows(4)), filename="teams.csv", content_type="text/csv")
    resp = await client.post("/api/v1/jobs/teams", data=form)
    job = await resp.json()
    assert resp.status == 202, job
    assert resp.headers["Location"] == f"/api/v1/jobs/{job['id']}"

    done = await wait_for_state(client, job["id"], "completed")

    assert done["progress"]["teams_created"] == 4
    names = sorted([t["name"] async for t in db.teams.find({"job_id": job["id"]})])
    assert names == [f"Team {i}" for i in range(1, 5)]
