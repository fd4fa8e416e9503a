"""Finding 1: who may start work. Starting any job (an import, a teams job, a
background export, a streamed export, a download ticket for a new export)
needs operator or admin; a viewer sees jobs and their events and downloads
completed results."""

from __future__ import annotations

import io

from ..support.helpers import make_csv
from .conftest import exported, imported


async def _refused(resp) -> dict:
    assert resp.status == 403, (resp.status, await resp.text())
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert body["required_role"] == "operator", body
    return body


async def test_a_viewer_cannot_start_any_job_on_any_route(orgs, db):
    await imported(orgs.operator_a)
    viewer = orgs.viewer
    csv_body = {"data": io.BytesIO(make_csv(5)), "headers": {"Content-Type": "text/csv"}}
    starts = [
        ("POST", "/api/v1/exports/people.csv", {}),
        ("POST", "/api/v1/downloads", {"json": {"export": {"dataset": "people"}}}),
        ("POST", "/api/v1/jobs/export", {"json": {"dataset": "people"}}),
        ("POST", "/api/v1/jobs/import?dataset=people", csv_body),
        ("POST", "/api/v1/jobs/import?dataset=people&dry_run=true", {**csv_body, "data": io.BytesIO(make_csv(5))}),
        ("POST", "/api/v1/jobs/teams", {**csv_body, "data": io.BytesIO(b"team,manager_name,manager_phone,members\n")}),
    ]
    for method, path, kwargs in starts:
        resp = await viewer.request(method, path, **kwargs)
        await _refused(resp)
    # Nothing was started or stored by any of them: only the operator's import exists.
    jobs = await db.jobs.find({}, {"kind": 1, "created_by": 1}).to_list()
    assert [j["kind"] for j in jobs] == ["import"], jobs
    assert await db.download_tickets.count_documents({}) == 0


async def test_a_viewer_still_lists_reads_follows_and_downloads_completed_results(orgs):
    await imported(orgs.operator_a)
    export = await exported(orgs.operator_a)
    viewer = orgs.viewer

    listed = await (await viewer.get("/api/v1/jobs")).json()
    assert {j["id"] for j in listed["jobs"]} >= {export["id"]}
    assert (await viewer.get(f"/api/v1/jobs/{export['id']}")).status == 200
    events = await viewer.get(f"/api/v1/jobs/{export['id']}/events")
    assert events.status == 200 and events.content_type == "text/event-stream"
    events.close()

    result = await viewer.get(f"/api/v1/jobs/{export['id']}/result")
    assert result.status == 200
    assert (await result.text()).startswith("id,name,day")

    resp = await viewer.post("/api/v1/downloads", json={"job_id": export["id"]})
    assert resp.status == 201, await resp.text()
    ticket = await resp.json()
    assert ticket["kind"] == "result"
    download = await viewer.client.get(ticket["url"])  # the ticket is the credential
    assert download.status == 200 and (await download.text()).startswith("id,name,day")
