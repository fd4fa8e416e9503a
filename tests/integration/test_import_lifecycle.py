"""The import lifecycle through the real HTTP app against the real database."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from bson import ObjectId

from service.jobs.model import PAUSE
from service.typedefs import MANAGER_KEY

from ..support.helpers import (
    control,
    get_job,
    make_csv,
    start_import,
    wait_for_state,
    wait_until_processed,
    wait_until_settled,
)

# Small batches make a 20,000-row import take hundreds of batches, so a test can
# act on it while it runs; the assertions do not depend on its speed.
SLOW = {"batch_size": 100}


async def count(db, job_id: str) -> int:
    return await db.records.count_documents({"job_id": job_id})


async def test_an_import_stores_every_row_once_with_typed_values(client, db):
    job = await start_import(client, make_csv(2500), types="id:int,day:date")
    assert job["state"] in ("queued", "running")
    assert job["progress"]["total"] == 2500

    done = await wait_for_state(client, job["id"], "completed")

    assert done["progress"]["processed"] == 2500
    assert done["progress"]["inserted"] == 2500
    assert done["progress"]["failed"] == 0
    assert done["progress"]["percent"] == 100.0
    assert done["errors"] == []
    rows = await db.records.find({"job_id": job["id"]}).sort("row", 1).to_list()
    assert [r["row"] for r in rows] == list(range(1, 2501))
    first = rows[0]
    assert first["org_id"] == "default" and first["dataset"] == "people"
    assert first["data"] == {
        "id": 1,
        "name": "name 1",
        "day": dt.datetime(2017, 2, 2, tzinfo=dt.timezone.utc),
        "c3": "v1-3",
    }
    assert await db.db["uploads.files"].count_documents({}) == 0, "the upload is deleted once imported"


async def hold_still(db, job_id: str, seconds: float = 2.0) -> int:
    """The job's row count, checked to stay the same for ``seconds``."""
    settled = await count(db, job_id)
    watch_until = time.monotonic() + seconds
    while time.monotonic() < watch_until:
        assert await count(db, job_id) == settled
        await asyncio.sleep(0.1)
    return settled


async def test_pause_shows_pausing_until_writes_stop_then_paused_writes_nothing(client, db):
    job = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, job["id"])

    pausing = await control(client, job["id"], "pause")
    at_response = await count(db, job["id"])
    assert pausing["state"] == "pausing"

    # Sent to the owner: the runner knows before the response, so at most the
    # batch already in flight lands after it (the README's bound: one batch).
    paused = await wait_for_state(client, job["id"], "paused")
    stopped_at = await hold_still(db, job["id"])
    assert stopped_at - at_response <= SLOW["batch_size"]
    assert paused["progress"]["inserted"] == stopped_at
    assert stopped_at < 20_000
    still = await get_job(client, job["id"])
    assert still["state"] == "paused"
    assert still["progress"]["rows_per_second"] == 0.0

    resumed = await control(client, job["id"], "resume")
    assert resumed["state"] == "running"
    await wait_for_state(client, job["id"], "completed")

    rows = await db.records.distinct("row", {"job_id": job["id"]})
    assert await count(db, job["id"]) == 20_000
    assert sorted(rows) == list(range(1, 20_001))


async def test_a_pause_learned_at_a_checkpoint_lets_at_most_two_batches_land(make_client, db):
    # A tick too slow to matter: this replica can learn of the pause only when a
    # checkpoint reads the job's state back, with the next batch already sent,
    # exactly as when the request lands on another replica (README: two batches).
    client = await make_client(job_poll_seconds=60, job_lease_seconds=180)
    job = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, job["id"])

    # Written to the job document only, as another replica would write it.
    result = await client.app[MANAGER_KEY].repo.request("default", job["id"], PAUSE)
    at_response = await count(db, job["id"])
    assert result.job["state"] == "pausing"
    settled = await wait_until_settled(client, job["id"])

    stopped_at = await hold_still(db, job["id"])
    assert stopped_at - at_response <= 2 * SLOW["batch_size"]
    assert settled["progress"]["inserted"] == stopped_at, "the batch in flight is recorded before the pause"
    assert stopped_at < 20_000

    await control(client, job["id"], "resume")
    await wait_for_state(client, job["id"], "completed")
    rows = await db.records.distinct("row", {"job_id": job["id"]})
    assert sorted(rows) == list(range(1, 20_001))


async def test_resume_while_pausing_cancels_the_pause(make_client, db):
    client = await make_client(job_poll_seconds=60, job_lease_seconds=180)
    job = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, job["id"])

    # The runner has not seen the pause yet (it learns at its next checkpoint).
    await client.app[MANAGER_KEY].repo.request("default", job["id"], PAUSE)
    resumed = await control(client, job["id"], "resume")
    assert resumed["state"] == "running"
    await wait_for_state(client, job["id"], "completed")
    assert await count(db, job["id"]) == 20_000


async def test_terminate_while_running_removes_every_row_and_spares_other_jobs(client, db):
    other = await start_import(client, make_csv(1500), dataset="keep")
    await wait_for_state(client, other["id"], "completed")

    job = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, job["id"])
    terminating = await control(client, job["id"], "terminate")
    assert terminating["state"] == "terminating"

    done = await wait_for_state(client, job["id"], "terminated")

    assert await count(db, job["id"]) == 0
    assert await count(db, other["id"]) == 1500
    assert done["progress"]["rolled_back"] > 0
    assert done["finished_at"] is not None
    assert await db.db["uploads.files"].count_documents({"_id": ObjectId(job["params"]["file_id"])}) == 0


async def test_terminate_while_paused_rolls_back_too(client, db):
    job = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, job["id"])
    await control(client, job["id"], "pause")
    await wait_until_settled(client, job["id"])

    await control(client, job["id"], "terminate")
    await wait_for_state(client, job["id"], "terminated")

    assert await count(db, job["id"]) == 0


async def test_a_repeated_request_is_200_and_only_an_impossible_one_is_409(client):
    job = await start_import(client, make_csv(50))
    await wait_for_state(client, job["id"], "completed")

    resume = await control(client, job["id"], "resume", expect=409)
    assert resume["state"] == "completed"
    assert resume["type"] == "urn:problem:collect-jobs:invalid-transition"
    terminate = await control(client, job["id"], "terminate", expect=409)
    assert terminate["state"] == "completed"
    retry = await control(client, job["id"], "retry", expect=409)
    assert retry["state"] == "completed"

    running = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, running["id"])
    again_resume = await control(client, running["id"], "resume")
    assert again_resume["state"] == "running", "resuming a running job is already satisfied"
    first = await control(client, running["id"], "pause")
    again = await control(client, running["id"], "pause")
    assert again["state"] in ("pausing", "paused") and again["epoch"] == first["epoch"]
    await wait_until_settled(client, running["id"])
    settled = await control(client, running["id"], "pause")
    assert settled["state"] == "paused"
    await control(client, running["id"], "terminate")
    await control(client, running["id"], "terminate")
    done = await wait_for_state(client, running["id"], "terminated")
    repeated = await control(client, running["id"], "terminate")
    assert repeated["state"] == "terminated" and repeated["finished_at"] == done["finished_at"]
    assert (await control(client, running["id"], "pause", expect=409))["state"] == "terminated"


async def test_unknown_jobs_are_404_for_reads_and_actions(client):
    missing = str(ObjectId())
    resp = await client.get(f"/api/v1/jobs/{missing}")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    for action in ("pause", "resume", "terminate"):
        resp = await client.post(f"/api/v1/jobs/{missing}/{action}")
        assert resp.status == 404
    resp = await client.post(f"/api/v1/jobs/{missing}/explode")
    assert resp.status == 404


async def test_racing_pause_and_resume_requests_leave_one_consistent_state(client, db):
    job = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, job["id"])

    actions = ["pause", "resume", "pause", "resume", "pause", "pause", "resume", "pause"]
    responses = await asyncio.gather(*(client.post(f"/api/v1/jobs/{job['id']}/{a}") for a in actions))
    assert {r.status for r in responses} <= {200, 409}

    state = (await get_job(client, job["id"]))["state"]
    if state in ("pausing", "paused"):
        # Paused in the document means paused in fact: no rows are being written.
        await wait_until_settled(client, job["id"])
        await hold_still(db, job["id"], 1.0)
        await control(client, job["id"], "resume")
    await wait_for_state(client, job["id"], "completed")
    assert await count(db, job["id"]) == 20_000


async def test_racing_terminate_with_pause_and_resume_always_ends_terminated_and_empty(client, db):
    job = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, job["id"])

    actions = ["pause", "terminate", "resume", "pause", "terminate", "resume"]
    responses = await asyncio.gather(*(client.post(f"/api/v1/jobs/{job['id']}/{a}") for a in actions))
    statuses = [r.status for r in responses]
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}
    terminate_statuses = [s for a, s in zip(actions, statuses) if a == "terminate"]
    assert terminate_statuses == [200, 200], "a second terminate finds the first one done: 200, nothing new"

    await wait_for_state(client, job["id"], "terminated")
    assert await count(db, job["id"]) == 0


async def test_a_queued_import_starts_right_after_the_running_one_is_rolled_back(client, db):
    wrong = await start_import(client, make_csv(20_000), **SLOW)
    await wait_until_processed(client, wrong["id"])
    corrected = await start_import(client, make_csv(3000))
    assert corrected["state"] == "queued"
    assert (await get_job(client, corrected["id"]))["state"] == "queued", "one import per org at a time"

    await control(client, wrong["id"], "terminate")
    finished = await wait_for_state(client, corrected["id"], "completed")
    rolled_back = await get_job(client, wrong["id"])

    assert rolled_back["state"] == "terminated"
    assert finished["started_at"] >= rolled_back["finished_at"]
    assert await count(db, wrong["id"]) == 0
    assert await count(db, corrected["id"]) == 3000


async def test_imports_of_different_orgs_or_kinds_are_limited_by_max_running_jobs(make_client, db):
    client = await make_client(max_imports_per_org=3, max_running_jobs=2)
    jobs = [await start_import(client, make_csv(20_000), **SLOW) for _ in range(3)]
    await wait_until_processed(client, jobs[0]["id"])
    await wait_until_processed(client, jobs[1]["id"])
    assert (await get_job(client, jobs[2]["id"]))["state"] == "queued"
    for job in jobs:
        await control(client, job["id"], "terminate")
    for job in jobs:
        await wait_for_state(client, job["id"], "terminated")


async def test_jobs_are_listed_newest_first_filtered_and_paginated(client):
    ids = []
    for _ in range(3):
        job = await start_import(client, make_csv(10))
        await wait_for_state(client, job["id"], "completed")
        ids.append(job["id"])

    resp = await client.get("/api/v1/jobs", params={"limit": "2", "kind": "import", "state": "completed"})
    page = await resp.json()
    assert [j["id"] for j in page["jobs"]] == [ids[2], ids[1]]
    assert page["next"]
    resp = await client.get(page["next"])
    rest = await resp.json()
    assert [j["id"] for j in rest["jobs"]] == [ids[0]]
    assert rest["next"] is None

    resp = await client.get("/api/v1/jobs", params={"state": "running"})
    assert (await resp.json())["jobs"] == []
    resp = await client.get("/api/v1/jobs", params={"state": "sleeping"})
    assert resp.status == 400
    assert (await resp.json())["parameter"] == "state"


async def test_health_answers_without_the_database_and_readiness_checks_it(client):
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"


async def test_a_runner_whose_job_is_set_back_to_queued_gives_it_up_and_the_rerun_is_exact(client, db):
    """Runner.apply treats a state no runner is for as "no longer mine": it
    stops without another write, and the next claim (a higher epoch) finishes
    the job from its checkpoint."""
    job = await start_import(client, make_csv(20_000), **SLOW)
    running = await wait_until_processed(client, job["id"], at_least=500)
    await db.jobs.update_one({"_id": job["id"]}, {"$set": {"state": "queued", "owner": None}, "$inc": {"rev": 1}})

    done = await wait_for_state(client, job["id"], "completed")

    assert done["epoch"] > running["epoch"]
    rows = await db.records.distinct("row", {"job_id": job["id"]})
    assert sorted(rows) == list(range(1, 20_001))
