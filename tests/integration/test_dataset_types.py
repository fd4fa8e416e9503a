"""GET /datasets/{dataset}: the columns and types of the dataset's latest
completed import, which the import form pre-selects."""

from __future__ import annotations

from ..support.helpers import make_csv, start_import, wait_for_state


async def test_the_dataset_says_the_types_of_its_latest_import(client):
    first = await start_import(client, make_csv(20), dataset="visits", types="id:int")
    await wait_for_state(client, first["id"], "completed")
    latest = await start_import(client, make_csv(30), dataset="visits", types="id:int,day:date:%Y-%m-%d")
    await wait_for_state(client, latest["id"], "completed")
    resp = await client.get("/api/v1/datasets/visits")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["columns"] == ["id", "name", "day", "c3"]
    assert body["types"] == {"id": "int", "day": "date:%Y-%m-%d"}
    assert body["latest_import"]["job_id"] == latest["id"] and body["latest_import"]["rows"] == 30
    assert body["imports_kept"] == 2


async def test_a_dataset_without_a_completed_import_is_a_404(client):
    resp = await client.get("/api/v1/datasets/nothing")
    assert resp.status == 404


async def test_a_raw_upload_takes_its_name_from_content_disposition(client):
    resp = await client.post(
        "/api/v1/jobs/import?dataset=named",
        data=make_csv(5),
        headers={"Content-Type": "text/csv", "Content-Disposition": 'attachment; filename="../people-2026.csv"'},
    )
    job = await resp.json()
    assert resp.status == 202, job
    assert job["params"]["filename"] == "people-2026.csv"
    await wait_for_state(client, job["id"], "completed")
