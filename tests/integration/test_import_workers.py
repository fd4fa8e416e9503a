"""An import whose batches are built in JOB_WORKERS=2 worker processes, through
the real app against the real database: the same rows, row numbers, pause,
resume and terminate as in-process."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from ..support.helpers import control, get_job, make_csv, start_import, wait_for_state, wait_until_processed, wait_until_settled

SLOW = {"batch_size": 100}


@pytest.fixture
async def workers_client(make_client):
    return await make_client(job_workers=2)


async def rows_of(db, job_id: str) -> list[dict]:
    return await db.records.find({"job_id": job_id}).sort("_id", 1).to_list()


async def test_an_import_built_by_workers_stores_every_row_once_in_file_order(workers_client, db):
    body = make_csv(2500).replace(b"\n2,name 2,", b'\n2,"name\n2",', 1)  # a quoted newline: line numbers shift
    body += b"bad,row,2017-01-01,x\n"
    job = await start_import(workers_client, body, types="id:int,day:date", batch_size=300)

    done = await wait_for_state(workers_client, job["id"], "completed", "failed")

    assert done["state"] == "completed", done
    assert done["progress"]["processed"] == 2501
    assert done["progress"]["inserted"] == 2500
    assert done["errors"] == [
        {"line": 2503, "row": 2501, "kind": "invalid_value", "message": "column 'id': 'bad' is not an integer"}
    ]
    rows = await rows_of(db, job["id"])
    assert [r["row"] for r in rows] == list(range(1, 2501))
    assert rows[1]["data"]["name"] == "name\n2"
    assert rows[2499]["data"] == {
        "id": 2500,
        "name": "name 2500",
        "day": dt.datetime(2017, 5, 9, tzinfo=dt.timezone.utc),
        "c3": "v2500-3",
    }
    assert rows[0]["_id"] == f"default/people/{job['id']}:0000000001"


async def test_pause_and_resume_with_workers_write_nothing_while_paused_and_lose_nothing(workers_client, db):
    job = await start_import(workers_client, make_csv(20_000), **SLOW)
    await wait_until_processed(workers_client, job["id"])

    pausing = await control(workers_client, job["id"], "pause")
    at_response = await db.records.count_documents({"job_id": job["id"]})
    assert pausing["state"] == "pausing"
    settled = await wait_until_settled(workers_client, job["id"])
    stopped_at = await db.records.count_documents({"job_id": job["id"]})
    assert stopped_at - at_response <= SLOW["batch_size"]
    assert stopped_at == settled["progress"]["inserted"] < 20_000
    watch_until = time.monotonic() + 1.0
    while time.monotonic() < watch_until:
        assert await db.records.count_documents({"job_id": job["id"]}) == stopped_at
        await asyncio.sleep(0.1)

    await control(workers_client, job["id"], "resume")
    done = await wait_for_state(workers_client, job["id"], "completed")

    assert done["progress"]["inserted"] == 20_000
    rows = await rows_of(db, job["id"])
    assert [r["row"] for r in rows] == list(range(1, 20_001))


async def test_terminate_with_workers_removes_every_row(workers_client, db):
    job = await start_import(workers_client, make_csv(20_000), **SLOW)
    await wait_until_processed(workers_client, job["id"], 1000)

    await control(workers_client, job["id"], "terminate")
    done = await wait_for_state(workers_client, job["id"], "terminated")

    assert await db.records.count_documents({"job_id": job["id"]}) == 0
    assert done["progress"]["rolled_back"] > 0
    assert (await get_job(workers_client, job["id"]))["state"] == "terminated"


async def test_a_job_paused_with_workers_resumes_in_process_exactly(make_client, db):
    """A checkpoint does not depend on where batches were built: a job paused
    on a replica with workers finishes on one without."""
    with_workers = await make_client(job_workers=2)
    job = await start_import(with_workers, make_csv(20_000), **SLOW)
    await wait_until_processed(with_workers, job["id"], 2000)
    await control(with_workers, job["id"], "pause")
    await wait_until_settled(with_workers, job["id"])
    await with_workers.close()  # hands the job back

    in_process = await make_client(job_workers=1)
    await control(in_process, job["id"], "resume")
    done = await wait_for_state(in_process, job["id"], "completed")

    assert done["progress"]["inserted"] == 20_000
    rows = await rows_of(db, job["id"])
    assert [r["row"] for r in rows] == list(range(1, 20_001))


async def test_max_field_size_applies_in_worker_processes(make_client, db):
    """csv's field limit is per process: the workers must get MAX_FIELD_SIZE
    too, both above Python's default of 131,072 bytes and below it."""
    big = b"x" * 300_000
    raised = await make_client(job_workers=2, max_field_size=1024 * 1024)
    job = await start_import(raised, b"id,blob\n1,small\n2," + big + b"\n3,small\n")
    done = await wait_for_state(raised, job["id"], "completed", "failed")

    assert done["state"] == "completed", done
    assert done["errors"] == []
    rows = await rows_of(db, job["id"])
    assert [r["data"]["blob"] for r in rows] == ["small", big.decode(), "small"]

    body = b"id,blob\n1,small\n2," + b"x" * 5000 + b"\n3,small\n"
    errors = []
    for workers in (2, 1):
        client = await make_client(job_workers=workers, max_field_size=1000)
        job = await start_import(client, body)
        done = await wait_for_state(client, job["id"], "completed", "failed")
        assert [r["data"]["id"] for r in await rows_of(db, job["id"])] == ["1", "3"]
        errors.append(done["errors"])
    assert errors[0] == errors[1]
    assert [e["line"] for e in errors[0]] == [3]
    assert "field larger than field limit" in errors[0][0]["message"]
