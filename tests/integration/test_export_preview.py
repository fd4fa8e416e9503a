"""The export preview (POST /jobs/export?dry_run=true): the rows in range,
the first rows as the export writes them, estimates of size and time, and
nothing created."""

from __future__ import annotations

import pytest

from service.api import export_preview

from ..support.helpers import make_csv, start_import, wait_for_state

N = 3000


def in_range(i: int) -> bool:
    """make_csv's day for row i is 2017-(i % 12 + 1)-(i % 28 + 1): March and April here."""
    return (i % 12) + 1 in (3, 4)


@pytest.fixture
async def visits(client):
    job = await start_import(client, make_csv(N), dataset="visits", types="id:int,day:date")
    return await wait_for_state(client, job["id"], "completed")


async def preview(client, expect: int = 200, **spec) -> dict:
    spec.setdefault("dataset", "visits")
    resp = await client.post("/api/v1/jobs/export?dry_run=true", json=spec)
    body = await resp.json()
    assert resp.status == expect, body
    return body


async def test_a_filtered_preview_counts_the_rows_in_range_and_shows_the_first_ones_as_exported(client, db, visits):
    jobs_before = await db.jobs.count_documents({})
    body = await preview(client, date_field="day", **{"from": "2017-03-01", "to": "2017-05-01"}, fields=["id", "day"])
    expected = [i for i in range(1, N + 1) if in_range(i)]
    assert body["rows_in_range"] == len(expected) == 500 and body["exact"] is True
    assert body["rows_read"] == N
    assert body["first_rows"][0][0] == str(expected[0]) and len(body["first_rows"]) == 10
    assert [r[0] for r in body["first_rows"]] == [str(i) for i in expected[:10]]
    assert body["first_rows_complete"] is True
    assert body["estimate"]["bytes"] > 500 * len("2,2017-03-03\r\n") * 0.8
    assert body["estimate"]["seconds"] is not None
    assert await db.jobs.count_documents({}) == jobs_before, "a preview creates no job"


async def test_an_unfiltered_preview_counts_every_row_from_the_imports(client, visits):
    body = await preview(client)
    assert body["rows_in_range"] == N and body["exact"] is True
    assert body["first_rows"][0][:2] == ["1", "name 1"]
    assert body["columns"] == ["id", "name", "day", "c3"]


async def test_a_preview_of_an_unknown_dataset_is_a_404(client, visits):
    await preview(client, expect=404, dataset="nope")


async def test_a_large_filtered_preview_is_estimated_from_a_sample_when_the_count_would_scan(client, db, visits, monkeypatch):
    """The database's count gets no time at all here, as on a dataset too large
    to count within COUNT_SECONDS: the estimate comes from windows of the range."""
    monkeypatch.setattr(export_preview, "COUNT_SECONDS", 0)
    monkeypatch.setattr(export_preview, "SAMPLE_WINDOWS", 6)
    monkeypatch.setattr(export_preview, "WINDOW_ROWS", 100)
    body = await preview(client, date_field="day", **{"from": "2017-03-01", "to": "2017-05-01"})
    assert body["exact"] is False and "estimated from 600 rows" in body["counted"]
    assert 350 <= body["rows_in_range"] <= 650
