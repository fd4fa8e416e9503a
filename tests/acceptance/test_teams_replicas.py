"""Team jobs survive their replica: kill -9 and a stall past the lease
(SIGSTOP), mid-job and mid-rollback, with real processes on one database."""

from __future__ import annotations

import asyncio
import signal

import pytest
from pymongo import AsyncMongoClient

from service.store.teams import team_id, user_id

from ..support.helpers import manager_phone, member_phone, sheet, snapshot, team_rows
from .api import FAST

ROWS = 1500
ORG = "default"


class Collections:
    def __init__(self, db) -> None:
        self.db = db
        self.teams = db["teams"]
        self.users = db["users"]
        self.undo = db["undo_log"]


@pytest.fixture
async def store(service_uri):
    client = AsyncMongoClient(service_uri)
    yield Collections(client.get_default_database())
    await client.close()


def rollback_under_way(job: dict) -> bool:
    """Some of the job's writes undone, not all."""
    progress = job["progress"]
    undone = progress.get("users_restored", 0) + progress.get("users_deleted", 0) + progress.get("teams_deleted", 0)
    return undone > 0 and progress.get("teams_deleted", 0) < progress["teams_created"]


async def teams_on_two_replicas(spawn, api, at_least: int):
    a, b = spawn("a", **FAST), spawn("b", **FAST)
    job = await api.start_teams(a, sheet(team_rows(ROWS)), batch_size=10)
    running = await api.wait(a, job["id"], lambda j: j["progress"].get("processed", 0) >= at_least and j["owner"])
    owner, other = (a, b) if running["owner"] == a.name else (b, a)
    return job, owner, other


async def test_kill_9_mid_teams_job_leaves_another_replica_to_create_each_team_once(spawn, api, store):
    job, owner, survivor = await teams_on_two_replicas(spawn, api, at_least=100)

    owner.signal(signal.SIGKILL)
    owner.wait(10)
    done = await api.wait(survivor, job["id"], lambda j: j["state"] in ("completed", "failed"), "completion", 300)

    assert done["state"] == "completed", done
    assert done["progress"]["processed"] == ROWS and done["progress"]["failed"] == 0
    assert await store.teams.count_documents({"job_id": job["id"]}) == ROWS
    assert await store.users.count_documents({"job_id": job["id"]}) == 3 * ROWS
    # A replayed batch adds nothing twice: every user is on exactly its one team.
    for i in (1, ROWS // 2, ROWS):
        manager = await store.users.find_one({"_id": user_id(ORG, manager_phone(i))})
        assert manager["teams"] == [team_id(ORG, f"Team {i}")]
    member = await store.users.find_one({"_id": user_id(ORG, member_phone(10 * ROWS + 2))})
    assert member["teams"] == [team_id(ORG, f"Team {ROWS}")]


async def test_kill_9_mid_rollback_still_leaves_teams_and_users_as_before(spawn, api, store):
    await store.users.insert_many(
        [
            {"_id": user_id(ORG, manager_phone(i)), "org_id": ORG, "phone": manager_phone(i), "name": f"Boss {i}"}
            for i in range(1, 400, 7)
        ]
    )
    before = await snapshot(store)
    job, owner, survivor = await teams_on_two_replicas(spawn, api, at_least=600)

    done = await api.kill_owner_mid_rollback(owner, survivor, job["id"], rollback_under_way)

    assert done["owner"] is None
    assert await snapshot(store) == before
    assert await store.undo.count_documents({}) == 0


async def test_a_stalled_teams_owner_that_wakes_after_adoption_changes_nothing(spawn, api, store):
    job, owner, survivor = await teams_on_two_replicas(spawn, api, at_least=100)
    owner.signal(signal.SIGSTOP)
    await api.wait(survivor, job["id"], lambda j: j["owner"] == survivor.name, "adoption", timeout=60)
    done = await api.wait(survivor, job["id"], lambda j: j["state"] == "completed", "completion", timeout=600)
    settled = await snapshot(store)

    owner.signal(signal.SIGCONT)
    await api.wait(owner, job["id"], lambda j: j["state"] == "completed")
    for _ in range(20):  # two seconds: whatever it had queued would land now
        assert (await api.job(owner, job["id"]))["epoch"] == done["epoch"]
        await asyncio.sleep(0.1)
    assert await snapshot(store) == settled
    assert await store.teams.count_documents({"job_id": job["id"]}) == ROWS


async def test_a_stalled_owner_of_a_teams_rollback_wakes_to_find_it_done_and_changes_nothing(spawn, api, store):
    await store.users.insert_many(
        [
            {"_id": user_id(ORG, manager_phone(i)), "org_id": ORG, "phone": manager_phone(i), "name": f"Boss {i}"}
            for i in range(1, 400, 7)
        ]
    )
    before = await snapshot(store)
    job, owner, survivor = await teams_on_two_replicas(spawn, api, at_least=300)
    await api.control(survivor, job["id"], "terminate")
    await api.wait(
        survivor, job["id"], lambda j: j["state"] == "terminating" and rollback_under_way(j), "a rollback under way", 300
    )
    owner.signal(signal.SIGSTOP)
    await api.wait(survivor, job["id"], lambda j: j["state"] == "terminated", "the rollback", timeout=600)
    assert await snapshot(store) == before

    owner.signal(signal.SIGCONT)
    for _ in range(20):
        await asyncio.sleep(0.1)
    assert (await api.job(owner, job["id"]))["state"] == "terminated"
    assert await snapshot(store) == before


@pytest.mark.timeout(900)
@pytest.mark.parametrize("first", ["failed", "running"])
async def test_a_failed_job_and_an_overlapping_running_one_terminated_in_either_order_leave_no_trace(spawn, api, store, first):
    """Issue 10: J1 fails part-way; J2 (same org, overlapping users) runs; one
    is terminated while J2 is still running, then the other. Teams and users
    end exactly as before both jobs, except a rename made directly in the
    database between the jobs and the rollbacks, which is kept."""
    proc = spawn("svc", **FAST)
    existing = {
        "_id": user_id(ORG, manager_phone(2)),
        "org_id": ORG,
        "phone": manager_phone(2),
        "name": None,
        "teams": ["default/old"],
    }
    bystander = {"_id": user_id(ORG, member_phone(500)), "org_id": ORG, "phone": member_phone(500), "name": "Bea", "teams": []}
    await store.users.insert_many([dict(existing), dict(bystander)])
    before = await snapshot(store)

    rows = team_rows(30)
    rows[25][2] = "not a phone"
    j1 = await api.start_teams(proc, sheet(rows), on_error="fail", batch_size=5)
    failed = await api.wait(proc, j1["id"], lambda j: j["state"] in ("failed", "completed"), "J1 to fail", timeout=300)
    assert failed["state"] == "failed" and failed["progress"]["teams_created"] > 0, failed

    overlap = [
        [f"Second {i}", f"Manager {i}", manager_phone(i), f"{member_phone(i * 10 + 1)};{member_phone(500)}"]
        for i in range(1, 600)
    ]
    j2 = await api.start_teams(proc, sheet(overlap), batch_size=5)
    await api.wait(proc, j2["id"], lambda j: j["progress"].get("processed", 0) >= 40, "J2 under way", timeout=300)
    await store.users.update_one({"_id": bystander["_id"]}, {"$set": {"name": "Beatrice"}})

    order = [j1, j2] if first == "failed" else [j2, j1]
    await api.control(proc, order[0]["id"], "terminate")
    if first == "failed":
        # J1's rollback must not run beside J2 (issue 21, finding 4): it waits
        # for the org's teams slot that J2 holds, and says so.
        waiting = await api.wait(proc, j1["id"], lambda j: "waiting" in j, "J1 to say it waits for J2", timeout=60)
        assert waiting["state"] == "terminating" and waiting["waiting"]["holders"] == [{"id": j2["id"], "state": "running"}]
        assert (await api.job(proc, j2["id"]))["state"] == "running"
    else:
        await api.wait(proc, j2["id"], lambda j: j["state"] == "terminated", "the first rollback", timeout=600)
    # The second terminate: with first == "failed", J1's rollback runs first
    # (the older rollback), then J2's.
    await api.control(proc, order[1]["id"], "terminate")
    for job in order:
        await api.wait(proc, job["id"], lambda j: j["state"] == "terminated", "both rollbacks", timeout=600)

    after = await snapshot(store)
    expected = [{**u, "name": "Beatrice"} if u["_id"] == bystander["_id"] else u for u in before["users"]]
    assert after == {"teams": before["teams"], "users": expected}
