"""Idempotency-Key on the creating POSTs: a retried request gets the job the
first one created, stores nothing twice, and a reused key is a 422."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io

import aiohttp
from bson import ObjectId

from service.api import idempotency

from ..support.helpers import make_csv, sheet, team_rows, wait_for_state

CSV = make_csv(50)


async def uploads_left(db, timeout: float = 30.0) -> int:
    """Stored uploads, once the finished jobs' cleanup (which follows the
    completed state) has had its chance: polls until none or the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (count := await db.db["uploads.files"].count_documents({})) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return count


async def post_import(client, body: bytes = CSV, key: str | None = "key-1", multipart: bool = False, **params):
    params.setdefault("dataset", "people")
    headers = {"Idempotency-Key": key} if key else {}
    if multipart:
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(body), filename="people.csv", content_type="text/csv")
        data = form
    else:
        data, headers["Content-Type"] = io.BytesIO(body), "text/csv"
    resp = await client.post("/api/v1/jobs/import", params=params, data=data, headers=headers)
    return resp, await resp.json(content_type=None)


async def test_a_retried_upload_gets_the_same_job_and_is_not_stored_twice(client, db):
    first, job = await post_import(client)
    assert first.status == 202 and "Idempotent-Replayed" not in first.headers
    again, same = await post_import(client)
    assert again.status == 202, same
    assert same["id"] == job["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    await wait_for_state(client, job["id"], "completed")
    assert await db.jobs.count_documents({}) == 1
    assert await db.records.count_documents({}) == 50
    # The one upload was deleted when the job completed; the retry stored none.
    assert await uploads_left(db) == 0
    late, later = await post_import(client)
    assert late.status == 202 and later["id"] == job["id"] and later["state"] == "completed"


async def test_the_same_file_sent_again_as_multipart_is_the_same_request(client, db):
    _, job = await post_import(client, multipart=True)
    resp, same = await post_import(client, multipart=True)
    assert resp.status == 202 and same["id"] == job["id"]
    resp, raw = await post_import(client)
    assert resp.status == 202 and raw["id"] == job["id"]
    await wait_for_state(client, job["id"], "completed")
    assert await db.jobs.count_documents({}) == 1


async def test_the_same_key_with_another_body_or_query_is_a_422_and_creates_nothing(client, db):
    _, job = await post_import(client)
    resp, body = await post_import(client, make_csv(51))
    assert resp.status == 422, body
    assert body["type"] == "urn:problem:collect-jobs:idempotency-key-reused"
    resp, body = await post_import(client, dataset="other")
    assert resp.status == 422, body
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people"}, headers={"Idempotency-Key": "key-1"})
    assert resp.status == 422
    await wait_for_state(client, job["id"], "completed")
    assert await db.jobs.count_documents({}) == 1


async def test_keys_belong_to_an_org(make_client, db):
    ours, theirs = await make_client(), await make_client(default_org_id="other-org")
    _, mine = await post_import(ours)
    resp, other = await post_import(theirs)
    assert resp.status == 202 and other["id"] != mine["id"] and other["org_id"] == "other-org"
    await wait_for_state(ours, mine["id"], "completed")
    await wait_for_state(theirs, other["id"], "completed")


async def test_without_a_key_every_post_is_a_new_job(client, db):
    _, one = await post_import(client, key=None)
    _, two = await post_import(client, key=None)
    assert one["id"] != two["id"]
    for job in (one, two):
        await wait_for_state(client, job["id"], "completed")


async def test_concurrent_requests_with_one_key_create_one_job(client, db):
    answers = await asyncio.gather(*(post_import(client) for _ in range(4)))
    statuses = sorted(resp.status for resp, _ in answers)
    assert set(statuses) <= {202, 409}, statuses
    ids = {body["id"] for resp, body in answers if resp.status == 202}
    assert len(ids) == 1
    for resp, body in answers:
        if resp.status == 409:
            assert body["type"] == "urn:problem:collect-jobs:idempotency-key-in-progress"
    await wait_for_state(client, ids.pop(), "completed")
    assert await db.jobs.count_documents({}) == 1
    assert await uploads_left(db) == 0


async def test_a_rejected_request_does_not_use_up_its_key(client, db):
    resp, body = await post_import(client, batch_size=0)
    assert resp.status == 400, body
    resp, body = await post_import(client, batch_size=10)
    assert resp.status == 202, body
    await wait_for_state(client, body["id"], "completed")


async def test_a_teams_dry_run_creates_nothing_so_its_key_stays_free(client, db):
    data = sheet(team_rows(3))
    headers = {"Idempotency-Key": "teams-1", "Content-Type": "text/csv"}
    resp = await client.post("/api/v1/jobs/teams", params={"dry_run": "true"}, data=data, headers=headers)
    assert resp.status == 200
    first = await client.post("/api/v1/jobs/teams", data=data, headers=headers)
    again = await client.post("/api/v1/jobs/teams", data=data, headers=headers)
    assert first.status == again.status == 202
    job = await first.json()
    assert (await again.json())["id"] == job["id"]
    await wait_for_state(client, job["id"], "completed")
    assert await db.teams.count_documents({}) == 3


async def test_an_export_request_with_its_fields_in_another_order_is_the_same_request(client, db):
    _, data = await post_import(client, key=None)
    await wait_for_state(client, data["id"], "completed")
    headers = {"Idempotency-Key": "export-1"}
    one = await client.post("/api/v1/jobs/export", json={"dataset": "people", "fields": ["id", "name"]}, headers=headers)
    two = await client.post(
        "/api/v1/jobs/export",
        data='{ "fields": ["id", "name"],\n "dataset": "people" }',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert one.status == two.status == 202
    job = await one.json()
    assert (await two.json())["id"] == job["id"]
    other = await client.post("/api/v1/jobs/export", json={"dataset": "people", "fields": ["name", "id"]}, headers=headers)
    assert other.status == 422
    await wait_for_state(client, job["id"], "completed")
    assert await db.jobs.count_documents({"kind": "export"}) == 1


async def test_a_malformed_key_is_a_400(client, db):
    resp, body = await post_import(client, key="x" * 256)
    assert resp.status == 400 and body["parameter"] == "Idempotency-Key"
    assert await db.jobs.count_documents({}) == 0


async def test_a_key_older_than_a_day_is_free_again(client, db):
    _, job = await post_import(client)
    await wait_for_state(client, job["id"], "completed")
    await db.idempotency_keys.update_many({}, {"$set": {"created_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25)}})
    resp, fresh = await post_import(client)
    assert resp.status == 202 and fresh["id"] != job["id"]
    await wait_for_state(client, fresh["id"], "completed")


async def test_expired_keys_are_removed(client, db):
    _, job = await post_import(client)
    await wait_for_state(client, job["id"], "completed")
    await db.idempotency_keys.update_many({}, {"$set": {"created_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25)}})
    _, other = await post_import(client, key="key-2")
    await wait_for_state(client, other["id"], "completed")
    ttl = [s for s in (await db.idempotency_keys.index_information()).values() if "expireAfterSeconds" in s]
    if ttl:  # MongoDB: its TTL monitor removes them (once a minute)
        assert ttl[0]["key"] == [("created_at", 1)] and ttl[0]["expireAfterSeconds"] == 24 * 3600
    else:  # FerretDB 1.24 has no TTL indexes: the service deletes them as it claims a key
        assert await db.idempotency_keys.count_documents({}) == 1


async def test_a_progress_document_left_by_a_crash_inside_create_does_not_poison_the_key(client, db):
    """repo.create inserts the progress document, then the job: a replica that
    died between the two left the first alone. The retry with the same key
    takes the claim over (same job id) and must finish the creation."""
    job_id = str(ObjectId())
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    await db.idempotency_keys.insert_one(
        {
            "_id": "default/key-1",
            "org_id": "default",
            "key": "key-1",
            "method": "POST",
            "path": "/api/v1/jobs/import",
            "query": "dataset=people",
            "resource_id": job_id,
            "digest": hashlib.sha256(CSV).hexdigest(),
            "created_at": before,
            "bound_at": before,
        }
    )
    await db.job_progress.insert_one(
        {
            "_id": job_id,
            "org_id": "default",
            "progress": {"processed": 0},
            "checkpoint": None,
            "errors": [],
            "owner": None,
            "epoch": 0,
            "lease_until": None,
        }
    )
    resp, job = await post_import(client)
    assert resp.status == 202, job
    assert job["id"] == job_id
    await wait_for_state(client, job_id, "completed")
    assert await db.jobs.count_documents({}) == 1
    assert await db.job_progress.count_documents({}) == 1
    assert await db.records.count_documents({}) == 50


async def test_a_claim_whose_upload_still_streams_is_not_taken_over_past_the_old_ten_minutes(client, db, monkeypatch):
    """A 1 GiB upload at under 1.7 MB/s streams for more than ten minutes. Its
    request keeps its claim alive with a heartbeat, so a retry meanwhile is
    told to wait (409) instead of taking the claim and the same job id over.
    The ten minutes are simulated by moving the claim's times back, and the
    heartbeat is made frequent: nothing waits for real minutes."""
    monkeypatch.setattr(idempotency, "HEARTBEAT", dt.timedelta(seconds=0.05), raising=False)
    gate = asyncio.Event()

    async def slow_upload():
        yield CSV[:100]
        await gate.wait()
        yield CSV[100:]

    headers = {"Idempotency-Key": "key-1", "Content-Type": "text/csv"}
    first = asyncio.create_task(
        client.post("/api/v1/jobs/import", params={"dataset": "people"}, data=slow_upload(), headers=headers)
    )
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while await db.idempotency_keys.count_documents({}) == 0:
            assert asyncio.get_running_loop().time() < deadline, "the first request never claimed its key"
            await asyncio.sleep(0.02)
        eleven_minutes_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=11)
        await db.idempotency_keys.update_one({}, {"$set": {"created_at": eleven_minutes_ago, "heartbeat_at": eleven_minutes_ago}})
        while (await db.idempotency_keys.find_one({})).get("heartbeat_at") <= eleven_minutes_ago:
            assert asyncio.get_running_loop().time() < deadline, "the request still streaming never refreshed its claim"
            await asyncio.sleep(0.02)

        resp, body = await post_import(client)
        assert resp.status == 409, body
        assert body["type"] == "urn:problem:collect-jobs:idempotency-key-in-progress"
    finally:
        gate.set()
        resp = await first
    job = await resp.json()
    assert resp.status == 202, job
    await wait_for_state(client, job["id"], "completed")
    assert await db.jobs.count_documents({}) == 1
    assert await db.records.count_documents({}) == 50
