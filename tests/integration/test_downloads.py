"""No GET starts an export: streamed exports start from a POST, and a browser
redeems a single-use, short-lived ticket created by a POST."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ..support.helpers import make_csv, start_import, wait_for_state

N = 500


@pytest.fixture
async def people(client):
    job = await start_import(client, make_csv(N, columns=5), types="id:int,day:date")
    await wait_for_state(client, job["id"], "completed")
    return job


async def exports_started(client) -> list[dict]:
    listed = await (await client.get("/api/v1/jobs", params={"kind": "export"})).json()
    return listed["jobs"]


async def reference_csv(client) -> bytes:
    resp = await client.post("/api/v1/exports/people.csv")
    assert resp.status == 200
    return await resp.read()


async def new_ticket(client, expect: int = 201, **spec) -> dict:
    resp = await client.post("/api/v1/downloads", json=spec)
    body = await resp.json(content_type=None)
    assert resp.status == expect, body
    if expect == 201:
        assert resp.headers["Location"] == body["url"]
    return body


async def test_a_plain_get_of_the_old_export_url_starts_nothing(client, people):
    for method in ("GET", "HEAD"):
        resp = await client.request(method, "/api/v1/exports/people.csv")
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
    assert await exports_started(client) == []


async def test_a_ticket_streams_the_export_once_without_a_bearer_and_then_is_gone(client, people):
    reference = await reference_csv(client)
    ticket = await new_ticket(client, export={"dataset": "people"})
    assert ticket["kind"] == "export" and ticket["filename"] == "people.csv"
    assert ticket["url"].startswith("/api/v1/downloads/") and len(ticket["url"]) > 50
    assert len(await exports_started(client)) == 1, "creating a ticket starts no export"

    resp = await client.get(ticket["url"])
    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="people.csv"'
    assert await resp.read() == reference
    job = await wait_for_state(client, resp.headers["X-Job-Id"], "completed")
    assert job["params"]["stream"] is True

    again = await client.get(ticket["url"])
    assert again.status == 410
    assert "already used" in (await again.json())["detail"]
    assert len(await exports_started(client)) == 2


async def test_a_ticket_carries_the_filter_and_fields(client, people):
    ticket = await new_ticket(
        client, export={"dataset": "people", "date_field": "day", "from": "2017-08-01", "to": "2017-09-01", "fields": ["id"]}
    )
    body = await (await client.get(ticket["url"])).read()
    lines = body.decode().split("\r\n")
    assert lines[0] == "id"
    assert [int(x) for x in lines[1:-1]] == [i for i in range(1, N + 1) if (i % 12) + 1 == 8]


async def test_head_does_not_use_up_a_ticket(client, people):
    ticket = await new_ticket(client, export={"dataset": "people"})
    head = await client.head(ticket["url"])
    assert head.status == 405
    assert (await client.get(ticket["url"])).status == 200


async def test_an_unknown_ticket_is_404_and_an_expired_one_410(client, db, people):
    assert (await client.get("/api/v1/downloads/not-a-ticket")).status == 404
    ticket = await new_ticket(client, export={"dataset": "people"})
    await db.download_tickets.update_many(
        {}, {"$set": {"expires_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)}}
    )
    assert (await client.get(ticket["url"])).status == 410
    assert await exports_started(client) == []


async def test_a_ticket_expires_after_five_minutes(client, db, people):
    before = dt.datetime.now(dt.timezone.utc)
    ticket = await new_ticket(client, export={"dataset": "people"})
    expires = dt.datetime.fromisoformat(ticket["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(seconds=290) < expires - before < dt.timedelta(seconds=310)
    stored = await db.download_tickets.find_one({})
    assert stored["org_id"] == "default" and stored["used_at"] is None


async def test_a_ticket_is_checked_when_it_is_created(client, people):
    body = await new_ticket(client, expect=404, export={"dataset": "nope"})
    assert body["parameter"] == "dataset"
    body = await new_ticket(client, expect=400, export={"dataset": "people", "fields": ["password"]})
    assert body["parameter"] == "fields"
    await new_ticket(client, expect=400, export={"dataset": "people"}, job_id="x")
    body = await new_ticket(client, expect=400, dataset="people")
    assert body["parameter"] == "dataset"
    assert await exports_started(client) == []


async def test_a_ticket_for_a_finished_export_sends_its_stored_file(client, people):
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people"})
    job = await resp.json()
    await wait_for_state(client, job["id"], "completed")
    stored = await (await client.get(f"/api/v1/jobs/{job['id']}/result")).read()
    ticket = await new_ticket(client, job_id=job["id"])
    assert ticket["kind"] == "result" and ticket["job_id"] == job["id"]
    resp = await client.get(ticket["url"])
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(stored)
    assert await resp.read() == stored
    assert (await client.get(ticket["url"])).status == 410


async def test_a_broken_download_of_a_stored_result_resumes_with_range_on_the_same_ticket(client, people):
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people"})
    job = await resp.json()
    await wait_for_state(client, job["id"], "completed")
    ticket = await new_ticket(client, job_id=job["id"])
    first = await client.get(ticket["url"])
    assert first.status == 200 and first.headers["Accept-Ranges"] == "bytes"
    etag, whole = first.headers["ETag"], await first.read()
    # The browser kept the first 700 bytes when the connection broke; it asks for the rest.
    parts, start = [whole[:700]], 700
    while start < len(whole):
        resp = await client.get(ticket["url"], headers={"Range": f"bytes={start}-{start + 9_999}", "If-Range": etag})
        assert resp.status == 206, await resp.text()
        assert resp.headers["Content-Range"] == f"bytes {start}-{min(start + 10_000, len(whole)) - 1}/{len(whole)}"
        parts.append(await resp.read())
        start += 10_000
    assert b"".join(parts) == whole
    # A validator of another file: the whole file again.
    resp = await client.get(ticket["url"], headers={"Range": "bytes=700-", "If-Range": '"not-this-file"'})
    assert resp.status == 200 and await resp.read() == whole
    # Without a Range the ticket is still spent.
    assert (await client.get(ticket["url"])).status == 410


async def test_a_result_ticket_needs_a_completed_background_export(make_client, db):
    client = await make_client(max_running_jobs=1)
    data = await start_import(client, make_csv(20), dataset="people")
    await wait_for_state(client, data["id"], "completed")
    body = await new_ticket(client, expect=404, job_id=data["id"])
    assert "background export" in body["detail"]
    await new_ticket(client, expect=404, job_id="000000000000000000000000")
    # A paused import holds the only slot, so the export stays queued.
    blocker = await start_import(client, make_csv(20_000), dataset="other", batch_size=100)
    await wait_for_state(client, blocker["id"], "running")
    assert (await client.post(f"/api/v1/jobs/{blocker['id']}/pause")).status == 200
    job = await (await client.post("/api/v1/jobs/export", json={"dataset": "people"})).json()
    body = await new_ticket(client, expect=409, job_id=job["id"])
    assert body["state"] == "queued"
    assert (await client.post(f"/api/v1/jobs/{blocker['id']}/terminate")).status == 200
    await wait_for_state(client, job["id"], "completed")
    await wait_for_state(client, blocker["id"], "terminated")


async def test_another_org_cannot_create_a_ticket_for_our_export(make_client, people):
    other = await make_client(default_org_id="other-org")
    await new_ticket(other, expect=404, export={"dataset": "people"})


async def test_a_retried_ticket_request_with_its_key_gets_the_same_ticket(client, people):
    headers = {"Idempotency-Key": "dl-1"}
    one = await client.post("/api/v1/downloads", json={"export": {"dataset": "people"}}, headers=headers)
    two = await client.post("/api/v1/downloads", json={"export": {"dataset": "people"}}, headers=headers)
    assert one.status == two.status == 201
    assert (await one.json())["url"] == (await two.json())["url"]
    assert two.headers["Idempotent-Replayed"] == "true"


async def test_a_streamed_export_takes_no_body_and_no_idempotency_key(client, people):
    resp = await client.post("/api/v1/exports/people.csv", data=b"dataset=people")
    assert resp.status == 400
    resp = await client.post("/api/v1/exports/people.csv", headers={"Idempotency-Key": "k"})
    body = await resp.json()
    assert resp.status == 400 and "/api/v1/downloads" in body["detail"]
    assert await exports_started(client) == []


async def test_two_gets_of_one_ticket_at_once_stream_it_once(client, people):
    ticket = await new_ticket(client, export={"dataset": "people"})
    first, second = await asyncio.gather(client.get(ticket["url"]), client.get(ticket["url"]))
    assert sorted([first.status, second.status]) == [200, 410]
    winner = first if first.status == 200 else second
    await winner.read()
    assert len(await exports_started(client)) == 1
