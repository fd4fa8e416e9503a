"""What the retention sweep reclaims besides finished jobs (issue 21, findings 6
and 7): uploads nobody will read, GridFS chunks without a files document,
audit events past AUDIT_RETENTION_DAYS, failed jobs past
FAILED_JOB_RETENTION_DAYS. The sweep runs on the app's own database handle
(so every query it sends is checked for an index) with an injected ``now``:
the defaults (UPLOAD_GRACE_SECONDS 6 h, AUDIT_RETENTION_DAYS 400,
FAILED_JOB_RETENTION_DAYS 30) are judged without waiting for them."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from service.jobs.model import utcnow
from service.retention import sweep
from service.store.files import CHUNK_BYTES, store_stream
from service.typedefs import DB_KEY

from ..support.helpers import control, make_csv, start_import, wait_for_state, wait_until_processed, wait_until_settled

HOURS, DAYS = dt.timedelta(hours=1), dt.timedelta(days=1)


async def one_chunk():
    yield b"id,name\n1,a\n"


async def stored(bucket, job_id: str | None) -> ObjectId:
    metadata = {"org_id": "default", "dataset": "people"}
    if job_id is not None:
        metadata["job_id"] = job_id
    return (await store_stream(bucket, "people.csv", one_chunk(), max_bytes=10**6, metadata=metadata)).file_id


async def file_left(db, bucket: str, file_id: ObjectId) -> tuple[int, int]:
    return (
        await db.db[f"{bucket}.files"].count_documents({"_id": file_id}),
        await db.db[f"{bucket}.chunks"].count_documents({"files_id": file_id}),
    )


async def test_an_upload_stored_with_no_job_is_deleted_after_the_grace_and_not_before(client, db, settings):
    """The request died between storing the upload and creating its job."""
    app_db = client.app[DB_KEY]
    file_id = await stored(app_db.uploads, str(ObjectId()))
    await sweep(app_db, settings, now=utcnow() + 5 * HOURS)
    assert await file_left(db, "uploads", file_id) == (1, 1)
    await sweep(app_db, settings, now=utcnow() + 7 * HOURS)
    assert await file_left(db, "uploads", file_id) == (0, 0)


async def test_chunks_without_a_files_document_are_deleted_after_the_grace(client, db, settings):
    """A writer killed mid-file (kill -9) left chunks and no files document."""
    app_db = client.app[DB_KEY]
    left = {}
    for bucket in ("uploads", "exports"):
        writer = getattr(app_db, bucket).writer(ObjectId(), "x.csv", {"org_id": "default"})
        await writer.write(b"x" * (4 * CHUNK_BYTES + 10))  # four chunks inserted, never closed
        left[bucket] = writer.file_id
        assert await file_left(db, bucket, writer.file_id) == (0, 4)
    await sweep(app_db, settings, now=utcnow() + 5 * HOURS)
    for bucket, file_id in left.items():
        assert await file_left(db, bucket, file_id) == (0, 4), bucket
    await sweep(app_db, settings, now=utcnow() + 7 * HOURS)
    for bucket, file_id in left.items():
        assert await file_left(db, bucket, file_id) == (0, 0), bucket


async def test_a_failed_jobs_upload_is_kept_for_its_retry(client, db, settings):
    failed = await start_import(client, make_csv(10) + b"oops\n", on_error="fail", types="id:int", batch_size=5)
    await wait_for_state(client, failed["id"], "failed")
    file_id = ObjectId(failed["params"]["file_id"])
    await sweep(client.app[DB_KEY], settings, now=utcnow() + 7 * HOURS)
    assert await file_left(db, "uploads", file_id) == (1, 1)


async def test_a_completed_jobs_upload_left_by_a_crash_before_cleanup_is_deleted(client, db, settings):
    job = await start_import(client, make_csv(10))
    await wait_for_state(client, job["id"], "completed")
    app_db = client.app[DB_KEY]
    left = await stored(app_db.uploads, job["id"])  # what a crash between completed and cleanup leaves
    kept = await stored(app_db.uploads, None)
    await app_db.uploads.files.update_one({"_id": kept}, {"$set": {"metadata.job_id": str(ObjectId())}})
    paused = await start_import(client, make_csv(20_000), batch_size=100)
    await wait_until_processed(client, paused["id"])
    await control(client, paused["id"], "pause")
    await wait_until_settled(client, paused["id"])
    await sweep(app_db, settings, now=utcnow() + 7 * HOURS)
    assert await file_left(db, "uploads", left) == (0, 0)
    assert await file_left(db, "uploads", kept) == (0, 0)
    # A job that is not finished keeps its upload, whatever its age.
    files, chunks = await file_left(db, "uploads", ObjectId(paused["params"]["file_id"]))
    assert files == 1 and chunks > 0
    await control(client, paused["id"], "terminate")
    await wait_for_state(client, paused["id"], "terminated")


async def test_audit_events_older_than_the_audit_retention_are_deleted(client, db, settings):
    job = await start_import(client, make_csv(10))
    await wait_for_state(client, job["id"], "completed")
    assert await db.audit.count_documents({}) == 1
    await sweep(client.app[DB_KEY], settings, now=utcnow() + 399 * DAYS)
    assert await db.audit.count_documents({}) == 1
    await sweep(client.app[DB_KEY], settings, now=utcnow() + 401 * DAYS)
    assert await db.audit.count_documents({}) == 0


async def test_a_failed_job_older_than_the_failed_job_retention_is_terminated_and_rolled_back(client, db, settings):
    failed = await start_import(client, make_csv(10) + b"oops\n", on_error="fail", types="id:int", batch_size=5)
    await wait_for_state(client, failed["id"], "failed")
    assert await db.records.count_documents({"job_id": failed["id"]}) > 0
    await sweep(client.app[DB_KEY], settings, now=utcnow() + 29 * DAYS)
    assert (await (await client.get(f"/api/v1/jobs/{failed['id']}")).json())["state"] == "failed"
    await sweep(client.app[DB_KEY], settings, now=utcnow() + 31 * DAYS)
    await wait_for_state(client, failed["id"], "terminated")
    assert await db.records.count_documents({"job_id": failed["id"]}) == 0
    assert await file_left(db, "uploads", ObjectId(failed["params"]["file_id"])) == (0, 0)
    events = [e["action"] async for e in db.audit.find({"job_id": failed["id"]}, sort=[("_id", 1)])]
    assert events == ["job.create", "job.terminate"]


async def test_an_export_attempts_file_whose_job_is_gone_is_deleted_after_the_grace(client, db, settings):
    """An export attempt writes a file named "<job>:<epoch>", a string _id that
    the sweeps by ObjectId range never matched: a replica killed mid-attempt
    left such files (whole or chunks only) of jobs later deleted, for ever.
    The result of a completed export stays."""
    app_db = client.app[DB_KEY]
    gone = str(ObjectId())  # a job that no longer exists
    left = []
    for epoch, whole in ((1, True), (2, False)):
        writer = app_db.exports.writer(f"{gone}:{epoch:08d}", "x.csv", {"org_id": "default"})
        await writer.write(b"x" * (2 * CHUNK_BYTES + 10))
        await (writer.close() if whole else writer.sync())  # with its files document, or chunks only
        left.append(writer.file_id)
    data = await start_import(client, make_csv(100), dataset="people")
    await wait_for_state(client, data["id"], "completed")
    export = await (await client.post("/api/v1/jobs/export", json={"dataset": "people"})).json()
    await wait_for_state(client, export["id"], "completed")
    result = (await db.jobs.find_one({"_id": export["id"]}))["params"]["file_id"]

    await sweep(app_db, settings, now=utcnow() + 5 * HOURS)
    assert [await file_left(db, "exports", f) for f in left] == [(1, 3), (0, 3)]
    await sweep(app_db, settings, now=utcnow() + 7 * HOURS)
    assert [await file_left(db, "exports", f) for f in left] == [(0, 0), (0, 0)]
    assert (await file_left(db, "exports", result))[0] == 1
    assert (await client.get(f"/api/v1/jobs/{export['id']}/result")).status == 200
