"""Nothing grows forever: DELETE /api/v1/jobs/{id}, and the retention sweeper
(RESULT_RETENTION_DAYS, JOB_RETENTION_DAYS)."""

from __future__ import annotations

import asyncio
import time

from bson import ObjectId

from service import retention
from service.jobs.kinds.exports import result_file_id

from ..support.helpers import control, make_csv, start_import, wait_for_state, wait_until_processed, wait_until_settled

SECOND = 1 / 86400  # in days


async def export(client, **spec) -> dict:
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people", **spec})
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    return await wait_for_state(client, job["id"], "completed", "failed")


async def stored_files(db, job: dict) -> tuple[int, int]:
    file_id = result_file_id(job)
    return (
        await db.exports.files.count_documents({"_id": file_id}),
        await db.exports.chunks.count_documents({"files_id": file_id}),
    )


async def test_deleting_a_finished_export_removes_its_job_and_its_file_at_once(client, db):
    imported = await start_import(client, make_csv(500))
    await wait_for_state(client, imported["id"], "completed")
    job = await export(client)
    assert job["state"] == "completed"
    assert await stored_files(db, job) == (1, 1)

    resp = await client.delete(f"/api/v1/jobs/{job['id']}")
    assert resp.status == 204
    assert (await client.get(f"/api/v1/jobs/{job['id']}")).status == 404
    assert (await client.get(f"/api/v1/jobs/{job['id']}/result")).status == 404
    assert await stored_files(db, job) == (0, 0)
    assert await db.job_progress.count_documents({"_id": job["id"]}) == 0
    assert (await client.delete(f"/api/v1/jobs/{job['id']}")).status == 404


async def test_only_finished_jobs_that_hold_nothing_can_be_deleted(client, db):
    running = await start_import(client, make_csv(20_000), batch_size=100)
    await wait_until_processed(client, running["id"])
    await control(client, running["id"], "pause")
    await wait_until_settled(client, running["id"])
    resp = await client.delete(f"/api/v1/jobs/{running['id']}")
    assert resp.status == 409
    assert (await resp.json())["state"] == "paused"

    await control(client, running["id"], "terminate")
    await wait_for_state(client, running["id"], "terminated")
    assert (await client.delete(f"/api/v1/jobs/{running['id']}")).status == 204

    completed = await start_import(client, make_csv(10))
    await wait_for_state(client, completed["id"], "completed")
    resp = await client.delete(f"/api/v1/jobs/{completed['id']}")
    assert resp.status == 409
    assert "describes its dataset" in (await resp.json())["detail"]

    failed = await start_import(client, make_csv(10) + b"oops\n", on_error="fail", types="id:int")
    await wait_for_state(client, failed["id"], "failed")
    resp = await client.delete(f"/api/v1/jobs/{failed['id']}")
    assert resp.status == 409 and "terminate it first" in (await resp.json())["detail"]

    assert (await client.delete(f"/api/v1/jobs/{ObjectId()}")).status == 404


async def test_results_and_then_jobs_expire_while_completed_imports_stay(make_client, db, monkeypatch):
    monkeypatch.setattr(retention, "SWEEP_SECONDS", 1.0)  # the hourly sweep, every second
    client = await make_client(result_retention_days=1 * SECOND, job_retention_days=4 * SECOND)
    imported = await start_import(client, make_csv(200))
    await wait_for_state(client, imported["id"], "completed")
    job = await export(client)
    assert job["state"] == "completed"
    terminated = await start_import(client, make_csv(20_000), dataset="other", batch_size=100)
    await control(client, terminated["id"], "terminate")
    await wait_for_state(client, terminated["id"], "terminated")

    deadline = time.monotonic() + 30
    while (result := await client.get(f"/api/v1/jobs/{job['id']}/result")).status == 200:
        assert time.monotonic() < deadline, "the result file never expired"
        await asyncio.sleep(0.2)
    assert result.status == 410
    assert await stored_files(db, job) == (0, 0)

    for gone in (job["id"], terminated["id"]):
        while (await client.get(f"/api/v1/jobs/{gone}")).status == 200:
            assert time.monotonic() < deadline, "the finished job never expired"
            await asyncio.sleep(0.2)
    assert await db.job_progress.count_documents({"_id": {"$in": [job["id"], terminated["id"]]}}) == 0

    # The completed import describes its dataset: it stays, and so does its data.
    assert (await client.get(f"/api/v1/jobs/{imported['id']}")).status == 200
    assert (await export(client))["state"] == "completed"
