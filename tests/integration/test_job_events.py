"""GET /api/v1/jobs/{id}/events: the job's progress as server-sent events."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from bson import ObjectId
from pymongo import monitoring

from service.app import create_app

from ..conftest import SUITE_QUERIES
from ..support.helpers import control, make_csv, start_import, wait_until_processed, wait_until_settled


async def read_events(resp) -> list[tuple[str, dict]]:
    """Parses the stream until the server ends it."""
    events, name, data = [], None, []
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        elif line == "" and name is not None:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


async def test_events_follow_a_job_to_completion_and_then_end(client):
    job = await start_import(client, make_csv(3000), batch_size=100)

    resp = await client.get(f"/api/v1/jobs/{job['id']}/events", params={"interval_ms": "50"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = await read_events(resp)

    names = [n for n, _ in events]
    assert names[-1] == "end" and events[-1][1] == {"state": "completed"}
    updates = [body for n, body in events if n == "job"]
    assert updates[-1]["state"] == "completed" and updates[-1]["progress"]["processed"] == 3000
    processed = [u["progress"].get("processed", 0) for u in updates]
    assert processed == sorted(processed), "progress never goes backwards"
    assert len(updates) >= 2, "the stream reported the job before it finished"


async def test_events_show_a_pause_and_the_terminate_that_follows(client):
    job = await start_import(client, make_csv(20_000), batch_size=100)
    await wait_until_processed(client, job["id"])
    await control(client, job["id"], "pause")
    await wait_until_settled(client, job["id"])

    resp = await client.get(f"/api/v1/jobs/{job['id']}/events", params={"interval_ms": "50"})
    first = (await resp.content.readuntil(b"\n\n")).decode()
    assert "event: job" in first and '"state": "paused"' in first
    await control(client, job["id"], "terminate")
    events = await read_events(resp)

    states = [body["state"] for n, body in events if n == "job"]
    assert states[-1] == "terminated"
    assert events[-1] == ("end", {"state": "terminated"})


async def test_events_of_an_unknown_job_are_404(client):
    resp = await client.get(f"/api/v1/jobs/{ObjectId()}/events")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"


class JobReads(monitoring.CommandListener):
    """Counts the reads of one job's control document by _id and org (what the
    API's GET and the event poll send), as the database sees them."""

    def __init__(self) -> None:
        self.job_id: str | None = None
        self.reads = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name == "find" and command.get("find") == "jobs":
            query = command.get("filter") or {}
            if self.job_id is not None and query.get("_id") == self.job_id and "org_id" in query:
                self.reads += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_two_hundred_subscribers_of_a_job_cost_one_read_per_interval(aiohttp_client, settings):
    reads = JobReads()
    app = create_app(settings.replace(max_event_streams_per_org=200), command_listeners=[SUITE_QUERIES, reads])
    client = await aiohttp_client(app)
    job = await start_import(client, make_csv(20_000), batch_size=100)
    await wait_until_processed(client, job["id"])
    await control(client, job["id"], "pause")
    await wait_until_settled(client, job["id"])

    url = client.make_url(f"/api/v1/jobs/{job['id']}/events")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        streams = [await session.get(url, params={"interval_ms": "100"}) for _ in range(200)]
        try:
            assert all(s.status == 200 for s in streams)
            firsts = await asyncio.gather(*(s.content.readuntil(b"\n\n") for s in streams))
            assert all(b'"state": "paused"' in f for f in firsts)

            reads.job_id = job["id"]
            started = time.monotonic()
            while time.monotonic() - started < 2.0:
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            # One poll every 100 ms for all 200 subscribers: about 20 reads in 2 s,
            # where one poll per subscriber would have sent 4,000.
            assert 5 <= reads.reads <= elapsed / 0.1 + 3, reads.reads

            metrics = await (await client.get("/metrics")).text()
            assert "collect_jobs_event_subscribers 200.0" in metrics
            assert "collect_jobs_event_polls 1.0" in metrics

            # A change reaches every subscriber from that one poll.
            await control(client, job["id"], "terminate")
            ends = await asyncio.gather(*(read_events(s) for s in streams))
            assert all(e[-1] == ("end", {"state": "terminated"}) for e in ends)
        finally:
            for stream in streams:
                stream.close()


async def test_event_streams_over_the_org_cap_are_refused_with_retry_after(make_client):
    client = await make_client(max_event_streams_per_org=2)
    job = await start_import(client, make_csv(20_000), batch_size=100)
    await wait_until_processed(client, job["id"])
    await control(client, job["id"], "pause")
    await wait_until_settled(client, job["id"])
    url = f"/api/v1/jobs/{job['id']}/events"

    first, second = await client.get(url), await client.get(url)
    assert first.status == second.status == 200
    refused = await client.get(url)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    assert "MAX_EVENT_STREAMS_PER_ORG" in (await refused.json())["detail"]

    first.close()
    deadline = time.monotonic() + 10
    while (again := await client.get(url)).status == 429:
        assert time.monotonic() < deadline, "a closed stream never freed its place"
        await asyncio.sleep(0.05)
    assert again.status == 200
    again.close()
    second.close()
    await control(client, job["id"], "terminate")
