"""Background loops end when cancelled even if the awaited call swallows the
cancel, as PyMongo's async API sometimes does (service/background.py)."""

from __future__ import annotations

import asyncio

from service.api.events import EventHub
from service.background import repeat, stop

# How long a loop may take to end once cancelled; its own interval is an hour.
ENDS_WITHIN = 10.0


def swallowing(entered: asyncio.Event, result: object = None):
    """A step that, like a PyMongo operation hit by a cancel mid-flight,
    returns normally instead of raising CancelledError."""

    async def step(*_: object) -> object:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
        return result

    return step


async def test_a_repeated_step_that_swallows_its_cancel_still_ends_the_loop():
    entered = asyncio.Event()
    errors: list[Exception] = []
    task = asyncio.create_task(repeat(swallowing(entered), 3600, errors.append))
    await asyncio.wait_for(entered.wait(), ENDS_WITHIN)

    await asyncio.wait_for(stop(task), ENDS_WITHIN)

    assert task.cancelled() and errors == []


async def test_a_repeated_step_that_fails_is_retried_after_the_interval():
    calls: list[int] = []
    errors: list[Exception] = []
    third = asyncio.Event()

    async def step() -> None:
        calls.append(1)
        if len(calls) == 3:
            third.set()
        raise ConnectionError("the database is away")

    task = asyncio.create_task(repeat(step, 0.01, errors.append))
    await asyncio.wait_for(third.wait(), ENDS_WITHIN)
    await stop(task)

    assert len(errors) >= 3 and all(isinstance(e, ConnectionError) for e in errors)


async def test_an_event_poll_whose_read_swallows_its_cancel_still_ends():
    doc = {"_id": "j1", "kind": "import", "state": "running", "org_id": "acme"}
    entered = asyncio.Event()
    reads = 0
    read = swallowing(entered, doc)

    async def fetch(org_id: str, job_id: str) -> dict:
        nonlocal reads
        reads += 1
        return doc if reads == 1 else await read()  # the first read starts the stream

    hub = EventHub(fetch, max_per_org=10)
    async with hub.subscribe("acme", "j1", interval=0.01) as poll:
        await asyncio.wait_for(entered.wait(), ENDS_WITHIN)
        await asyncio.wait_for(hub.close(), ENDS_WITHIN)
        assert poll.task is not None and poll.task.cancelled()
