"""Undo of a completed import or teams job (POST /api/v1/jobs/{id}/undo),
through the real app against the real database."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from service.jobs.model import utcnow
from service.retention import sweep
from service.store.records import job_prefix, prefix_range, record_id
from service.store.teams import team_id, undo_range, user_id

from ..support.helpers import (
    get_job,
    make_csv,
    manager_phone,
    member_phone,
    post_teams,
    sheet,
    snapshot,
    start_import,
    team_rows,
    wait_for_state,
)
from .test_teams import ORG, seed_existing

ROWS = 100_000  # the challenge's baseline upload (bench/undo_bench.py has the rates)
SMALL = 3_000


async def rows_of(db, job: dict) -> int:
    prefix = job_prefix(job["org_id"], job["params"]["dataset"], job["id"])
    return await db.records.count_documents({"_id": prefix_range(prefix)})


async def undo(client, job_id: str, *, expect: int = 200, dry_run: bool = False, reason: str | None = None) -> dict:
    resp = await client.post(
        f"/api/v1/jobs/{job_id}/undo",
        params={"dry_run": "true"} if dry_run else None,
        json={"reason": reason} if reason else None,
    )
    body = await resp.json(content_type=None)
    assert resp.status == expect, body
    return body


async def events(client, action: str) -> list[dict]:
    resp = await client.get("/api/v1/audit", params={"action": action})
    assert resp.status == 200
    return (await resp.json())["events"]


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_undo_of_a_completed_import_removes_exactly_its_rows_and_the_profile_forgets_it(client, db):
    first = await start_import(client, make_csv(ROWS), dataset="visits", types="id:int,day:date")
    first = await wait_for_state(client, first["id"], "completed", timeout=600)
    second = await start_import(client, make_csv(700, start=ROWS + 1), dataset="visits", types="id:int,day:date")
    second = await wait_for_state(client, second["id"], "completed")
    other = await start_import(client, make_csv(50), dataset="elsewhere")
    other = await wait_for_state(client, other["id"], "completed")
    assert first["undoable"] is True and first["links"]["undo"].endswith("/undo")
    profile = await db.profiles.find_one({"_id": f"{ORG}/visits"})
    assert [i["job_id"] for i in profile["imports"]] == [first["id"], second["id"]]

    # The dry run counts and changes nothing.
    # Another writer edits one row and deletes another.
    await db.records.update_one({"_id": record_id(ORG, "visits", first["id"], 1)}, {"$set": {"data.name": "edited"}})
    assert (await db.records.delete_one({"_id": record_id(ORG, "visits", first["id"], 5)})).deleted_count == 1
    before = await db.records.count_documents({})
    dry = await undo(client, first["id"], dry_run=True)
    assert dry["undoable"] is True and dry["refused"] is None and dry["undo_until"]
    assert dry["would"]["rows"] == ROWS - 1 and dry["would"]["inserted"] == ROWS and dry["would"]["deleted_since"] == 1
    assert dry["would"]["changed_since"] is None  # not known cheaply (README: Undo)
    assert await db.records.count_documents({}) == before
    assert (await get_job(client, first["id"]))["state"] == "completed"

    job = await undo(client, first["id"], reason="columns swapped")
    assert job["state"] == "undoing"
    done = await wait_for_state(client, first["id"], "undone", timeout=600)
    assert done["progress"]["rolled_back"] == ROWS - 1 and done["finished_at"]
    assert await rows_of(db, first) == 0
    assert await rows_of(db, second) == 700 and await rows_of(db, other) == 50
    profile = await db.profiles.find_one({"_id": f"{ORG}/visits"})
    assert [i["job_id"] for i in profile["imports"]] == [second["id"]]

    # Audited once, with actor and reason; the job's history shows it.
    undone = await events(client, "job.undo")
    assert len(undone) == 1 and undone[0]["reason"] == "columns swapped" and undone[0]["actor"]
    assert (undone[0]["state_before"], undone[0]["state_after"]) == ("completed", "undoing")
    history = (await get_job(client, first["id"]))["history"]
    assert [e["action"] for e in history] == ["job.create", "job.undo"]

    # A repeated undo is satisfied; nothing else applies to an undone job.
    assert (await undo(client, first["id"]))["state"] == "undone"
    resp = await client.post(f"/api/v1/jobs/{first['id']}/terminate")
    assert resp.status == 409 and (await resp.json())["state"] == "undone"
    assert len(await events(client, "job.undo")) == 1
    # An undone import, like a terminated one, may be deleted.
    assert (await client.delete(f"/api/v1/jobs/{first['id']}")).status == 204


async def test_undo_of_a_completed_teams_job_restores_teams_and_users_but_an_outside_edit_survives(client, db):
    await seed_existing(db)
    before = await snapshot(db)
    rows = team_rows(6)
    rows[5][2] = "202 555 0052"  # the unnamed member 52 (also on team 5) manages team 6
    job = await post_teams(client, sheet(rows), batch_size=2)
    done = await wait_for_state(client, job["id"], "completed")
    assert done["undoable"] is True
    # The undo log is kept for the undo window (not dropped at completion).
    assert await db.undo.count_documents({"_id": undo_range(job["id"])}) == done["progress"]["users_updated"] == 2

    # Outside edits after completion: a field on a user the job changed, and a new team.
    manager3 = user_id(ORG, manager_phone(3))
    await db.users.update_one({"_id": manager3}, {"$set": {"email": "m3@example.com"}})
    outside_team = {"_id": team_id(ORG, "Outside"), "org_id": ORG, "name": "Outside", "manager_id": manager3, "member_ids": []}
    await db.teams.insert_one(outside_team)

    after_edits = await snapshot(db)
    dry = await undo(client, job["id"], dry_run=True)
    assert dry["would"] == {"teams": 6, "users_restored": 2, "users_deleted": 15, "users_kept": 0}
    assert await snapshot(db) == after_edits

    await undo(client, job["id"], reason="phone column slid")
    undone = await wait_for_state(client, job["id"], "undone")
    assert undone["progress"]["teams_deleted"] == 6

    expected = {key: [dict(d) for d in docs] for key, docs in before.items()}
    for user in expected["users"]:
        if user["_id"] == manager3:
            user["email"] = "m3@example.com"
    expected["teams"] = sorted([*expected["teams"], outside_team], key=lambda t: t["_id"])
    assert await snapshot(db) == expected
    assert await db.undo.count_documents({"_id": undo_range(job["id"])}) == 0


async def test_a_later_teams_jobs_team_survives_the_undo_of_the_job_whose_user_it_lists(client, db):
    """Decision: undo is not refused when a later job depends on this one's users;
    the later job's team and its members survive, and undoing both restores all."""
    before = await snapshot(db)
    first = await post_teams(client, sheet(team_rows(3)))
    await wait_for_state(client, first["id"], "completed")
    # Team 10 lists member 11, whom the first job created for team 1.
    later_rows = [["Team 10", "Manager 10", manager_phone(10), member_phone(11)]]
    later = await post_teams(client, sheet(later_rows))
    await wait_for_state(client, later["id"], "completed")

    dry = await undo(client, first["id"], dry_run=True)
    assert dry["would"]["users_kept"] == 1 and dry["would"]["teams"] == 3

    await undo(client, first["id"])
    await wait_for_state(client, first["id"], "undone")
    team10 = await db.teams.find_one({"_id": team_id(ORG, "Team 10")})
    assert team10 is not None and team10["member_ids"] == [user_id(ORG, member_phone(11))]
    member11 = await db.users.find_one({"_id": user_id(ORG, member_phone(11))})
    assert member11["teams"] == [team_id(ORG, "Team 10")]
    assert await db.teams.count_documents({"job_id": first["id"]}) == 0

    await undo(client, later["id"])
    await wait_for_state(client, later["id"], "undone")
    assert await snapshot(db) == before


async def test_undo_after_the_window_is_a_409_naming_why_and_retention_dropped_the_undo_log(client, db, settings):
    job = await post_teams(client, sheet(team_rows(3)))
    await wait_for_state(client, job["id"], "completed")
    done = await sweep(db, settings, now=utcnow() + dt.timedelta(days=settings.job_undo_days + 1))
    assert done["undo_windows"] == 1

    resp = await client.post(f"/api/v1/jobs/{job['id']}/undo")
    body = await resp.json()
    assert resp.status == 409 and body["state"] == "completed"
    assert "JOB_UNDO_DAYS" in body["detail"], body
    shown = await get_job(client, job["id"])
    assert shown["undoable"] is False and "JOB_UNDO_DAYS" in shown["undo_ended"]["reason"] and "undo" not in shown["links"]
    dry = await undo(client, job["id"], dry_run=True)
    assert dry["undoable"] is False and "JOB_UNDO_DAYS" in dry["refused"]
    assert await db.teams.count_documents({"job_id": job["id"]}) == 3


async def test_an_undo_requested_on_two_replicas_at_once_runs_once(make_client, db):
    one, two = await make_client(), await make_client()
    job = await start_import(one, make_csv(SMALL), dataset="twice")
    await wait_for_state(one, job["id"], "completed")
    answers = await asyncio.gather(one.post(f"/api/v1/jobs/{job['id']}/undo"), two.post(f"/api/v1/jobs/{job['id']}/undo"))
    assert sorted(r.status for r in answers) == [200, 200]
    done = await wait_for_state(two, job["id"], "undone")
    assert done["progress"]["rolled_back"] == SMALL
    assert await rows_of(db, job) == 0
    assert len(await events(one, "job.undo")) == 1
    assert done["epoch"] == 2  # claimed once after the completion's epoch


async def test_only_imports_and_teams_jobs_can_be_undone_and_only_once_completed(client, db):
    imported = await start_import(client, make_csv(20), dataset="people")
    await wait_for_state(client, imported["id"], "completed")
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people"})
    export = await resp.json()
    await wait_for_state(client, export["id"], "completed")
    body = await undo(client, export["id"], expect=409)
    assert "export" in body["detail"] and "undo applies to import and teams jobs" in body["detail"]
    dry = await undo(client, export["id"], dry_run=True)
    assert dry["undoable"] is False and dry["would"] == {}
    # A job that is not completed: terminate is the way.
    slow = await start_import(client, make_csv(20_000), dataset="people2", batch_size=10)
    await wait_for_state(client, slow["id"], "running")
    body = await undo(client, slow["id"], expect=409)
    assert body["state"] in ("running", "completed")
    await client.post(f"/api/v1/jobs/{slow['id']}/terminate")
    await wait_for_state(client, slow["id"], "terminated", "undone")
