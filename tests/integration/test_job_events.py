"""GET /api/v1/jobs/{id}/events: the job's progress as server-sent events."""
from __future__ import annotations

import json

from bson import ObjectId

from ..helpers import control, make_csv, start_import, wait_until_processed, wait_until_settled


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
