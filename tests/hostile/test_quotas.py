"""Finding 2: quotas cannot be walked past. Queued jobs and upload bytes are
reserved in one conditional write each; an upload reserves the bytes it has
really received as it streams (a chunked body has no Content-Length) and is
cut with a 413 the moment it passes MAX_UPLOAD_BYTES_PER_ORG, nothing of it
kept; an org has at most MAX_UPLOADS_PER_ORG uploads streaming at once;
stored records and export results have per-org quotas that fail a job, with
a retryable error, before it writes past them."""

from __future__ import annotations

import asyncio

import aiohttp

from ..support.helpers import control, make_csv, start_import, wait_for_state, wait_until_processed
from .conftest import Stalled, imported

MiB = 1024 * 1024


async def chunked(body: bytes, piece: int = 64 * 1024, pause: float = 0.0):
    """The body as a chunked stream (no Content-Length), with a pause after its first piece."""
    for start in range(0, len(body), piece):
        yield body[start : start + piece]
        if start == 0 and pause:
            await asyncio.sleep(pause)


def csv_of(size: int) -> bytes:
    rows = make_csv(size // 30 + 10)
    return rows[: rows.rfind(b"\n", 0, size) + 1]


async def post_upload(caller, body, **kwargs) -> int:
    try:
        resp = await caller.post("/api/v1/jobs/import?dataset=people", data=body, headers={"Content-Type": "text/csv"}, **kwargs)
        await resp.read()
        return resp.status
    except aiohttp.ClientError:
        return 0  # cut off while sending: the server answered and closed early


async def stored(db) -> tuple[int, int]:
    files = await db.uploads.files.find({}, {"length": 1}).to_list()
    return sum(f["length"] for f in files), await db.uploads.chunks.count_documents(
        {"files_id": {"$nin": [f["_id"] for f in files]}}
    )


async def test_a_chunked_upload_is_cut_with_413_when_it_passes_the_orgs_upload_quota(orgs_with, db):
    orgs = await orgs_with(max_upload_bytes_per_org=MiB)
    resp = await orgs.operator_a.post(
        "/api/v1/jobs/import?dataset=people", data=chunked(csv_of(3 * MiB)), headers={"Content-Type": "text/csv"}
    )
    problem = await resp.json(content_type=None)
    assert resp.status == 413, problem
    assert "MAX_UPLOAD_BYTES_PER_ORG" in problem["detail"]
    assert await db.jobs.count_documents({}) == 0
    assert await stored(db) == (0, 0)
    assert await db.uploads.chunks.count_documents({}) == 0
    # Nothing of it stays reserved: an upload that fits is accepted.
    job = await start_import(orgs.operator_a, csv_of(MiB // 2))
    assert job["state"] in ("queued", "running", "completed")


async def test_six_concurrent_chunked_uploads_cannot_store_more_than_the_orgs_quota(orgs_with, db):
    orgs = await orgs_with(max_upload_bytes_per_org=MiB, max_uploads_per_org=4)
    body = csv_of(300 * 1024)
    assert MiB // 4 < len(body) < MiB // 3
    statuses = await asyncio.gather(*(post_upload(orgs.operator_a, chunked(body, pause=0.5)) for _ in range(6)))
    accepted = statuses.count(202)
    assert accepted <= 3, statuses  # four would pass 1 MiB
    assert statuses.count(429) >= 2, statuses  # at most 4 uploads stream at once
    assert await db.jobs.count_documents({}) == accepted
    size, orphans = await stored(db)
    assert orphans == 0 and size <= MiB, (size, orphans)
    # Org B's quota is its own.
    resp = await orgs.operator_b.post(
        "/api/v1/jobs/import?dataset=people", data=chunked(body), headers={"Content-Type": "text/csv"}
    )
    assert resp.status == 202, await resp.text()


async def test_six_concurrent_uploads_cannot_queue_more_than_max_queued_per_org(orgs_with, db):
    orgs = await orgs_with(max_queued_per_org=3, max_imports_per_org=1)
    # Org A's import slot is held by a paused import: new imports stay queued.
    holder = await start_import(orgs.operator_a, make_csv(5000), dataset="holder", batch_size=50)
    await wait_until_processed(orgs.operator_a, holder["id"])
    await control(orgs.operator_a, holder["id"], "pause")
    await wait_for_state(orgs.operator_a, holder["id"], "paused")
    statuses = await asyncio.gather(*(post_upload(orgs.operator_a, make_csv(5)) for _ in range(6)))
    assert sorted(statuses) == [202] * 3 + [429] * 3, statuses
    assert await db.jobs.count_documents({"state": "queued"}) == 3
    assert await db.uploads.files.count_documents({}) == 4  # the paused import's and three


async def test_stored_records_and_results_have_per_org_quotas_that_fail_the_job_retryably(orgs_with, db):
    orgs = await orgs_with(max_record_bytes_per_org=16 * 1024, max_result_bytes_per_org=1024)
    await imported(orgs.operator_a)  # 20 rows: well inside both quotas
    first = await orgs.operator_a.post("/api/v1/jobs/export", json={"dataset": "people"})
    await wait_for_state(orgs.operator_a, (await first.json())["id"], "completed")
    # A second stored result would pass MAX_RESULT_BYTES_PER_ORG.
    second = await orgs.operator_a.post("/api/v1/jobs/export", json={"dataset": "people"})
    job = await wait_for_state(orgs.operator_a, (await second.json())["id"], "completed", "failed")
    assert job["state"] == "failed" and "MAX_RESULT_BYTES_PER_ORG" in job["error"], job
    assert job["retryable"] is not False
    assert await db.exports.files.count_documents({}) == 1
    # An import that would pass MAX_RECORD_BYTES_PER_ORG fails before its rows land.
    big = await start_import(orgs.operator_a, make_csv(2000), dataset="big", batch_size=100)
    job = await wait_for_state(orgs.operator_a, big["id"], "completed", "failed")
    assert job["state"] == "failed" and "MAX_RECORD_BYTES_PER_ORG" in job["error"], job
    assert job["retryable"] is not False
    assert await db.records.count_documents({"org_id": "org-a", "job_id": big["id"]}) < 2000
    # Terminating it frees what it held; org B's imports never counted against org A.
    await control(orgs.operator_a, big["id"], "terminate")
    await wait_for_state(orgs.operator_a, big["id"], "terminated")
    other = await start_import(orgs.operator_b, make_csv(300), dataset="big")  # ~10 KB: under its own quota
    assert (await wait_for_state(orgs.operator_b, other["id"], "completed", "failed"))["state"] == "completed"


async def test_an_upload_that_stops_sending_is_cut_after_upload_idle_seconds_and_frees_its_slot(orgs_with, db):
    orgs = await orgs_with(upload_idle_seconds=1.0, max_uploads_per_org=1)
    first = make_csv(5)
    stalled = await Stalled.open(
        orgs.operator_a,
        "POST",
        "/api/v1/jobs/import?dataset=people",
        body=f"{len(first):x}\r\n".encode() + first + b"\r\n",  # one chunk, then nothing
        headers={"Content-Type": "text/csv", "Transfer-Encoding": "chunked"},
        read_head=False,
    )
    try:
        head = await asyncio.wait_for(stalled.reader.readuntil(b"\r\n\r\n"), 20)
        assert b" 408 " in head.split(b"\r\n")[0], head
    finally:
        stalled.close()
    assert await db.jobs.count_documents({}) == 0
    assert await stored(db) == (0, 0) and await db.uploads.chunks.count_documents({}) == 0
    # Its upload slot (MAX_UPLOADS_PER_ORG=1) is free again.
    await start_import(orgs.operator_a, make_csv(5))
