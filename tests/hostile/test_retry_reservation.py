"""A retry puts a failed job back in the queue: it takes one of the org's
MAX_QUEUED_PER_ORG queued jobs like a new job does (a limit is a
reservation), or retries could queue past the limit."""

from __future__ import annotations

from ..support.helpers import control, make_csv, start_import, wait_for, wait_for_state


async def test_a_retry_takes_a_queue_reservation_and_is_refused_when_the_queue_is_full(orgs_with, db):
    orgs = await orgs_with(max_queued_per_org=1, max_imports_per_org=1, db_retry_seconds=1)
    op = orgs.operator_a
    bad = make_csv(30).replace(b"\n25,", b"\nx25,", 1)  # not an int
    failed = await start_import(op, bad, dataset="broken", types="id:int", on_error="fail", batch_size=10)
    await wait_for_state(op, failed["id"], "failed")
    failed_doc = await db.jobs.find_one({"_id": failed["id"]})
    await db.jobs.update_one({"_id": failed["id"]}, {"$set": {"retryable": True}})  # a failure a retry can cure
    running = await start_import(op, make_csv(200_000), dataset="big", batch_size=100)
    await wait_for(op, running["id"], lambda j: j["state"] == "running", what="running")
    queued = await start_import(op, make_csv(10), dataset="small")
    assert (await wait_for_state(op, queued["id"], "queued"))["state"] == "queued"

    resp = await op.post(f"/api/v1/jobs/{failed['id']}/retry")
    assert resp.status == 429, await resp.text()
    assert (await db.jobs.find_one({"_id": failed["id"]}))["state"] == failed_doc["state"] == "failed"

    await control(op, queued["id"], "terminate")  # the queue's one place is free again
    await wait_for_state(op, queued["id"], "terminated")
    assert (await control(op, failed["id"], "retry"))["state"] in ("queued", "running")
    await control(op, running["id"], "terminate")
    await control(op, failed["id"], "terminate")
    await wait_for_state(op, running["id"], "terminated", timeout=120)
    await wait_for_state(op, failed["id"], "terminated", timeout=120)
