"""Slots mean work: a paused job keeps its org's slot but no process slot;
admission is fair across orgs however long the queue; the orphan sweep finds
every expired lease however many healthy jobs exist; streams and queued jobs
have their own caps."""

from __future__ import annotations

import asyncio
import datetime as dt

from bson import ObjectId

from ..support.helpers import control, get_job, make_csv, start_import, wait_for, wait_for_state

FAR = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
PAST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


async def paused_import(client, **params) -> dict:
    job = await start_import(client, make_csv(50_000), batch_size=100, **params)
    await wait_for(client, job["id"], lambda j: j["progress"].get("processed", 0) > 0)
    await control(client, job["id"], "pause")
    return await wait_for_state(client, job["id"], "paused")


async def move_to_org(db, job_id: str, org_id: str) -> None:
    """Gives a queued job to another organisation, as if that org had sent it
    (the service's identity layer is not part of what these tests look at)."""
    await db.jobs.update_one({"_id": job_id, "state": "queued"}, {"$set": {"org_id": org_id}})
    await db.job_progress.update_one({"_id": job_id}, {"$set": {"org_id": org_id}})


async def fake_jobs(db, count: int, state: str, **run) -> None:
    """Jobs of another replica that is alive and well (or queued work), inserted
    directly: they only have to exist for the sweep and the queue scan."""
    ids = [str(ObjectId()) for _ in range(count)]
    await db.jobs.insert_many(
        [
            {
                "_id": i,
                "org_id": "crowd",
                "kind": "import",
                "state": state,
                "rev": 1,
                "epoch": 1,
                "owner": run.get("owner"),
                "params": {},
            }
            for i in ids
        ]
    )
    await db.job_progress.insert_many([{"_id": i, "org_id": "crowd", "epoch": 1, "progress": {}, **run} for i in ids])


async def test_a_paused_import_keeps_its_orgs_slot_but_not_a_process_slot(make_client, db):
    client = await make_client(max_running_jobs=1)
    done = await start_import(client, make_csv(200), dataset="small")
    await wait_for_state(client, done["id"], "completed")
    paused = await paused_import(client)

    second = await start_import(client, make_csv(100))
    export = await client.post("/api/v1/jobs/export", json={"dataset": "small"})
    assert export.status == 202
    exported = await wait_for_state(client, (await export.json())["id"], "completed")
    assert exported["progress"]["processed"] == 200, "the paused import left the only process slot free"
    assert (await get_job(client, second["id"]))["state"] == "queued", "but it keeps the org's import slot"
    await control(client, paused["id"], "terminate")
    await wait_for_state(client, second["id"], "completed")


async def test_an_orgs_blocked_queue_does_not_hide_another_orgs_job_however_long_it_is(client, db):
    blocker = await paused_import(client)
    # Another org: one import paused on a live replica, 150 queued behind it.
    await fake_jobs(db, 1, "paused", owner="elsewhere", lease_until=FAR)
    await fake_jobs(db, 150, "queued", lease_until=None)
    for _ in range(3):  # and this org's own queued imports, blocked by its paused one
        await start_import(client, make_csv(10))
    other = await start_import(client, make_csv(300))
    await move_to_org(db, other["id"], "other-org")

    deadline = asyncio.get_running_loop().time() + 60
    while (job := await db.jobs.find_one({"_id": other["id"]}))["state"] != "completed":
        assert asyncio.get_running_loop().time() < deadline, job["state"]
        await asyncio.sleep(0.05)
    assert await db.records.count_documents({"job_id": other["id"], "org_id": "other-org"}) == 300
    assert await db.jobs.count_documents({"org_id": "crowd", "state": "queued"}) == 150, "the blocked org stays blocked"
    await control(client, blocker["id"], "terminate")


async def test_the_orphan_sweep_finds_an_expired_lease_among_many_healthy_jobs(client, db):
    await fake_jobs(db, 150, "running", owner="elsewhere", lease_until=FAR)
    blocker = await paused_import(client)
    orphan = await start_import(client, make_csv(500))
    # Its replica died while running it: a lease that expired long ago.
    await db.jobs.update_one({"_id": orphan["id"]}, {"$set": {"state": "running", "owner": "dead", "epoch": 1}})
    await db.job_progress.update_one({"_id": orphan["id"]}, {"$set": {"owner": "dead", "epoch": 1, "lease_until": PAST}})

    done = await wait_for_state(client, orphan["id"], "completed")
    assert done["epoch"] == 2 and done["progress"]["inserted"] == 500
    assert await db.job_progress.count_documents({"org_id": "crowd", "lease_until": FAR, "owner": "elsewhere"}) == 150
    await control(client, blocker["id"], "terminate")


async def test_streamed_downloads_have_their_own_caps_with_retry_after(make_client, db):
    client = await make_client(max_streams=1, max_streams_per_org=5)
    data = await start_import(client, make_csv(30_000), dataset="big")
    await wait_for_state(client, data["id"], "completed")
    async with client.post("/api/v1/exports/big.csv", params={"batch_size": "100"}) as first:
        job_id = first.headers["X-Job-Id"]
        await first.content.read(100)
        await control(client, job_id, "pause")  # a paused download still holds its stream
        second = await client.post("/api/v1/exports/big.csv")
        assert second.status == 429 and second.headers["Retry-After"]
        assert (await second.json(content_type=None))["type"] == "urn:problem:collect-jobs:too-many-requests"
        await control(client, job_id, "terminate")
    await wait_for_state(client, job_id, "terminated")


async def test_the_streams_per_org_cap_counts_every_replica(make_client, db):
    client = await make_client(max_streams=10, max_streams_per_org=1)
    data = await start_import(client, make_csv(30_000), dataset="big")
    await wait_for_state(client, data["id"], "completed")
    # A download of this org open on another replica: its job, and the org's
    # stream slot it reserved (service/jobs/reservations.py).
    job_id = str(ObjectId())
    await db.jobs.insert_one(
        {"_id": job_id, "org_id": "default", "kind": "export", "state": "running", "params": {"stream": True}}
    )
    await db.reservations.insert_one(
        {
            "_id": "default/streams",
            "org_id": "default",
            "scope": "streams",
            "used": 1,
            "held": {job_id: {"n": 1, "at": dt.datetime.now(dt.timezone.utc)}},
        }
    )
    refused = await client.post("/api/v1/exports/big.csv")
    assert refused.status == 429
    assert "MAX_STREAMS_PER_ORG" in (await refused.json(content_type=None))["detail"]


async def test_an_org_over_its_queued_jobs_quota_is_refused_before_its_upload_is_stored(make_client, db):
    client = await make_client(max_queued_per_org=2)
    blocker = await paused_import(client)
    for _ in range(2):
        await start_import(client, make_csv(10))
    files = await db.db["uploads.files"].count_documents({})

    refused = await start_import(client, make_csv(10), expect=429)

    assert "MAX_QUEUED_PER_ORG" in refused["detail"]
    assert await db.db["uploads.files"].count_documents({}) == files
    await control(client, blocker["id"], "terminate")


async def test_an_org_over_its_stored_upload_quota_gets_413_and_nothing_new_is_stored(make_client, db):
    blocking = len(make_csv(50_000))
    client = await make_client(max_upload_bytes_per_org=blocking + 100_000)
    blocker = await paused_import(client)  # its upload waits for it
    files = await db.db["uploads.files"].count_documents({})

    refused = await start_import(client, make_csv(5_000), expect=413)

    assert "MAX_UPLOAD_BYTES_PER_ORG" in refused["detail"]
    assert await db.db["uploads.files"].count_documents({}) == files
    await control(client, blocker["id"], "terminate")
    await wait_for_state(client, blocker["id"], "terminated")
    await start_import(client, make_csv(5_000))  # room again once the rollback deleted it
