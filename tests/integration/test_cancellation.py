"""A cancel that PyMongo swallows (the operation it lands in completes as if
nothing happened) still stops the job manager's loop and a job's runner
(service/background.py). The swallowing is simulated by wrapping the real
call; everything else is the real app on the real database."""

from __future__ import annotations

import asyncio

import pytest

from service.jobs import fence
from service.typedefs import MANAGER_KEY

from ..support.helpers import make_csv, start_import, wait_for_state

ENDS_WITHIN = 10.0


async def test_the_job_managers_loop_ends_when_its_tick_swallows_the_cancel(client):
    manager = client.app[MANAGER_KEY]
    entered = asyncio.Event()

    async def tick() -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass

    manager._tick = tick
    manager.wake()
    await asyncio.wait_for(entered.wait(), ENDS_WITHIN)

    await asyncio.wait_for(manager.stop(), ENDS_WITHIN)

    assert manager._loop_task.cancelled()


async def test_a_runner_whose_insert_swallows_the_cancel_stops_at_its_checkpoint_and_the_import_still_completes_exactly(
    client, db, monkeypatch: pytest.MonkeyPatch
):
    real_insert = fence.insert_encoded
    inserting = asyncio.Event()
    swallowed = asyncio.Event()

    async def insert(collection, docs):
        if not swallowed.is_set():
            inserting.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed.set()  # and carry on, as PyMongo may
        return await real_insert(collection, docs)

    monkeypatch.setattr(fence, "insert_encoded", insert)
    manager = client.app[MANAGER_KEY]
    job = await start_import(client, make_csv(20_000), batch_size=100)
    await asyncio.wait_for(inserting.wait(), ENDS_WITHIN)
    first = manager.runners[job["id"]].task

    first.cancel()
    await asyncio.wait([first], timeout=ENDS_WITHIN)

    assert swallowed.is_set() and first.cancelled()  # not run on to the end of the file
    # Handed back, the job is claimed again and finishes from its checkpoint.
    done = await wait_for_state(client, job["id"], "completed")
    assert done["progress"]["inserted"] == 20_000
    assert await db.records.count_documents({"job_id": job["id"]}) == 20_000
