"""Slow is not down (issue 22): a database slower than a write's deadline is
met with smaller writes, not with a failure; a pause lands within a unit
whatever the batch size; a rollback whose deletes time out still finishes.

The latency is injected at the store layer (a sleep proportional to the rows
of each insert or delete, before the real call, which then runs against the
real database with whatever is left of its deadline)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from service.jobs import fence
from service.store.records import ROW_DIGITS

from ..support.helpers import control, make_csv, start_import, wait_for, wait_for_state

# A 3 s lease leaves each write a deadline of 1-2 s.
SLOW = {"job_lease_seconds": 3.0, "job_poll_seconds": 0.2, "db_retry_seconds": 5.0}
INSERT_SECONDS_PER_ROW = 0.0004  # a full 10,000-row batch would take 4 s


@pytest.fixture
def slow_inserts(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fence.insert_encoded

    async def insert(collection: Any, docs: Any, *args: Any) -> Any:
        await asyncio.sleep(INSERT_SECONDS_PER_ROW * len(docs))
        return await real(collection, docs, *args)

    monkeypatch.setattr(fence, "insert_encoded", insert)


async def test_an_import_whose_database_is_slower_than_a_batch_fits_its_deadline_completes(make_client, db, slow_inserts):
    client = await make_client(**SLOW)
    job = await start_import(client, make_csv(20_000), batch_size=10_000)
    done = await wait_for_state(client, job["id"], "completed", "failed", timeout=120)
    assert done["state"] == "completed", done["error"]
    assert await db.records.count_documents({"job_id": job["id"]}) == 20_000


async def test_a_pause_takes_effect_within_a_write_unit_not_a_batch(make_client, db, slow_inserts):
    client = await make_client(**SLOW)
    job = await start_import(client, make_csv(40_000), batch_size=10_000)
    await wait_for(client, job["id"], lambda j: j["progress"].get("processed", 0) >= 10_000, timeout=120, what="a batch")
    await control(client, job["id"], "pause")
    at_request = await db.records.count_documents({"job_id": job["id"]})
    paused = await wait_for_state(client, job["id"], "paused", timeout=60)
    at_paused = await db.records.count_documents({"job_id": job["id"]})
    # A unit aims at 150 ms: a few hundred rows here, where a batch is 10,000
    # (and up to two batches were in flight before units).
    assert at_paused - at_request < 1_500, (at_request, at_paused)
    assert await db.records.count_documents({"job_id": job["id"]}) == at_paused
    await control(client, job["id"], "resume")
    done = await wait_for_state(client, job["id"], "completed", timeout=120)
    assert done["progress"]["inserted"] == 40_000 == await db.records.count_documents({"job_id": job["id"]})
    assert paused["progress"]["processed"] <= 40_000


async def test_a_rollback_whose_deletes_time_out_shrinks_them_and_finishes(make_client, db, monkeypatch: pytest.MonkeyPatch):
    client = await make_client(**SLOW)
    job = await start_import(client, make_csv(12_000), batch_size=2_000)
    await wait_for_state(client, job["id"], "completed")
    # From now on a delete takes 2 ms a row of its _id range: the first unit
    # (1,000 rows) runs out of its deadline.
    real = AsyncCollection.delete_many

    async def delete_many(self: AsyncCollection, query: dict, *args: Any, **kwargs: Any) -> Any:
        bounds = query.get("_id") if self.name == "records" else None
        if isinstance(bounds, dict) and str(bounds.get("$lt", ""))[-ROW_DIGITS:].isdigit():
            width = int(bounds["$lt"][-ROW_DIGITS:]) - int(bounds["$gte"][-ROW_DIGITS:])
            await asyncio.sleep(0.002 * width)
        return await real(self, query, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "delete_many", delete_many)
    job2 = await start_import(client, make_csv(12_000, start=100_000), batch_size=2_000)
    await wait_for(client, job2["id"], lambda j: j["progress"].get("processed", 0) >= 6_000, timeout=120, what="half")
    await control(client, job2["id"], "terminate")
    done = await wait_for_state(client, job2["id"], "terminated", timeout=120)
    assert await db.records.count_documents({"job_id": job2["id"]}) == 0
    assert await db.records.count_documents({"job_id": job["id"]}) == 12_000
    assert done["progress"]["rolled_back"] > 0
