"""A queued job says why it waits and where it stands in its org's queue,
computed when it is read: the org's slot and who holds it (running, paused,
rolling back), the replicas' process slots, or older jobs of the org ahead of
it. Reading changes nothing."""

from __future__ import annotations

from ..support.helpers import control, get_job, make_csv, start_import, wait_for, wait_for_state


async def slow_import(client, **params) -> dict:
    job = await start_import(client, make_csv(50_000), batch_size=100, **params)
    return await wait_for(client, job["id"], lambda j: j["progress"].get("processed", 0) > 0)


async def test_a_queued_import_names_the_job_holding_its_orgs_slot_and_its_place(client, db):
    holder = await slow_import(client, dataset="first")
    await control(client, holder["id"], "pause")
    await wait_for_state(client, holder["id"], "paused")
    second = await start_import(client, make_csv(10), dataset="second")
    third = await start_import(client, make_csv(10), dataset="third")
    before = await db.jobs.find_one({"_id": second["id"]})

    waiting = await get_job(client, second["id"])
    queue = waiting["queue"]
    assert queue["position"] == 1 and queue["of"] == 2
    assert queue["waiting_for"] == "org_slot"
    assert queue["holders"] == [{"id": holder["id"], "state": "paused"}]
    assert queue["reason"] == f"the org's import slot is held by job {holder['id']} (paused)"
    behind = await get_job(client, third["id"])
    assert behind["queue"]["position"] == 2 and behind["queue"]["of"] == 2
    listed = {j["id"]: j for j in (await (await client.get("/api/v1/jobs?state=queued")).json())["jobs"]}
    assert listed[third["id"]]["queue"] == behind["queue"]
    assert "queue" not in (await get_job(client, holder["id"]))
    assert await db.jobs.find_one({"_id": second["id"]}) == before, "a GET writes nothing"

    await control(client, holder["id"], "terminate")
    await wait_for_state(client, second["id"], "completed")
    assert "queue" not in (await get_job(client, second["id"]))


async def test_a_rolling_back_holder_is_named_as_rolling_back(make_client):
    client = await make_client(faults=frozenset({"import.rollback"}), rollback_give_up_seconds=3600.0)
    holder = await slow_import(client, dataset="first")
    await control(client, holder["id"], "terminate")
    await wait_for(
        client, holder["id"], lambda j: (j.get("rollback") or {}).get("attempts", 0) >= 1, what="a failed rollback attempt"
    )
    second = await start_import(client, make_csv(10), dataset="second")
    queue = (await get_job(client, second["id"]))["queue"]
    assert queue["reason"] == f"the org's import slot is held by job {holder['id']} (rolling back)"
    assert queue["holders"] == [{"id": holder["id"], "state": "terminating"}]


async def test_a_job_without_an_org_limit_waits_for_a_process_slot(make_client):
    client = await make_client(max_running_jobs=1)
    done = await start_import(client, make_csv(20), dataset="small")
    await wait_for_state(client, done["id"], "completed")
    running = await slow_import(client, dataset="big")
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "small"})
    export = await resp.json()
    queue = (await get_job(client, export["id"]))["queue"]
    assert queue["waiting_for"] == "process_slot"
    assert queue["reason"] == "waiting for a free process slot on the replicas (each runs at most 1 job at a time)"
    assert queue["position"] == 1 and queue["of"] == 1
    await control(client, running["id"], "terminate")
    await wait_for_state(client, export["id"], "completed")


async def test_an_undo_waiting_for_its_orgs_slot_says_which_job_holds_it(client, db):
    """An undo (or a rollback) of a job that had started waits for its org's
    slot, so that it never runs beside the org's next job of its kind; the
    API and the console say so, naming the holder, instead of showing an
    `undoing` job that does nothing."""
    done = await start_import(client, make_csv(200), dataset="first")
    await wait_for_state(client, done["id"], "completed")
    holder = await slow_import(client, dataset="second")
    await control(client, holder["id"], "pause")
    await wait_for_state(client, holder["id"], "paused")
    resp = await client.post(f"/api/v1/jobs/{done['id']}/undo")
    assert resp.status == 200, await resp.text()
    before = await db.jobs.find_one({"_id": done["id"]})

    undoing = await get_job(client, done["id"])
    assert undoing["state"] == "undoing"
    waiting = undoing["waiting"]
    assert waiting["waiting_for"] == "org_slot" and waiting["limit"] == 1
    assert waiting["holders"] == [{"id": holder["id"], "state": "paused"}]
    assert waiting["reason"].startswith(f"the undo waits for the org's import slot, held by job {holder['id']} (paused)")
    listed = {j["id"]: j for j in (await (await client.get("/api/v1/jobs?state=undoing")).json())["jobs"]}
    assert listed[done["id"]]["waiting"] == waiting
    assert "waiting" not in (await get_job(client, holder["id"]))
    assert await db.jobs.find_one({"_id": done["id"]}) == before, "a GET writes nothing"

    await control(client, holder["id"], "terminate")
    await wait_for_state(client, done["id"], "undone")
    assert "waiting" not in (await get_job(client, done["id"]))
    assert await db.records.count_documents({}) == 0
