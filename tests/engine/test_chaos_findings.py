"""Bugs the chaos run (bench/chaos.py) found, each with a test of its own."""

from __future__ import annotations

import csv
import io

import pytest
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import OperationFailure

from service.errors import InvalidTransition, JobFailed
from service.jobs.model import new_job_id
from service.jobs.runner import JobContext, Kind

from ..support.helpers import make_csv, start_import, wait_for_state
from .conftest import wait_job


async def test_a_failed_streamed_export_cannot_be_retried_since_its_client_is_gone(db, replicas):
    """Chaos seed 21: a streamed export failed when the database went away;
    its retry was accepted and the replica that claimed it crashed on every
    attempt (a stream has no file to write and nobody to stream to)."""

    async def run(ctx: JobContext) -> None:
        raise JobFailed("the database became unreachable during the download")

    async def nothing(ctx: JobContext) -> None:
        return None

    replica = await replicas({"stream": Kind(name="stream", run=run, rollback=nothing, cleanup=nothing)})
    job_id = new_job_id()
    job = {"_id": job_id, "org_id": "org-a", "kind": "stream", "created_by": "test", "params": {"stream": True}}
    await replica.manager.start_attached(job, {"processed": 0}, sink=object())
    failed = await wait_job(db, job_id, lambda j: j["state"] == "failed", "the stream to fail")
    assert failed["retryable"] is False
    with pytest.raises(InvalidTransition):
        await replica.manager.control("org-a", job_id, "retry")


async def test_an_export_whose_cursor_the_server_dropped_reads_on_and_writes_each_row_once(
    client, db, monkeypatch: pytest.MonkeyPatch
):
    """Chaos seed 21 (60 s): on a loaded server an export's cursor was dropped
    (CursorNotFound) and the job failed as an internal error. The export now
    reads on after the last row it wrote."""
    rows = 2_000
    imported = await start_import(client, make_csv(rows), dataset="people")
    await wait_for_state(client, imported["id"], "completed")
    real = AsyncCursor.to_list
    calls = 0

    async def to_list(self: AsyncCursor, length: int | None = None) -> list:
        nonlocal calls
        if self.collection.name == "records":
            calls += 1
            if calls == 3:  # the server dropped the cursor between two replies
                raise OperationFailure("cursor id 1 not found", 43)
        return await real(self, length)

    monkeypatch.setattr(AsyncCursor, "to_list", to_list)
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people", "batch_size": 150})
    job = await resp.json()
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert done["state"] == "completed", done["error"]
    body = await (await client.get(f"/api/v1/jobs/{job['id']}/result")).read()
    ids = [line[0] for line in csv.reader(io.StringIO(body.decode()))][1:]
    assert ids == [str(i) for i in range(1, rows + 1)]
    assert calls > 3
