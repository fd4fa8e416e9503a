"""Exports through the real app and database: background into GridFS, streamed
into the response of a POST, and the stored result with Range."""

from __future__ import annotations

import asyncio
import csv
import io

import aiohttp
import pytest

from ..support.helpers import control, get_job, make_csv, start_import, wait_for, wait_for_state

N = 3000


@pytest.fixture
async def people(client):
    """N rows of a typed import: id int, day date (2017, each month)."""
    job = await start_import(client, make_csv(N, columns=5), types="id:int,day:date")
    await wait_for_state(client, job["id"], "completed")
    return job


async def start_export(client, expect: int = 202, **spec) -> dict:
    spec.setdefault("dataset", "people")
    resp = await client.post("/api/v1/jobs/export", json=spec)
    body = await resp.json(content_type=None)
    assert resp.status == expect, body
    return body


async def result(client, job_id: str, **headers) -> tuple[int, bytes, aiohttp.ClientResponse]:
    resp = await client.get(f"/api/v1/jobs/{job_id}/result", headers=headers)
    return resp.status, await resp.read(), resp


def parse(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def expected_rows(ids) -> list[list[str]]:
    return [[str(i), f"name {i}", f"2017-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}", f"v{i}-3", f"v{i}-4"] for i in ids]


async def test_an_export_has_exactly_the_records_as_csv_lines(client, people):
    job = await start_export(client)
    done = await wait_for_state(client, job["id"], "completed")
    assert done["progress"]["processed"] == N and done["progress"]["total"] == N
    status, body, resp = await result(client, job["id"])
    assert status == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="people.csv"'
    assert int(resp.headers["Content-Length"]) == len(body) == done["progress"]["bytes"]
    rows = parse(body)
    assert rows[0] == ["id", "name", "day", "c3", "c4"]
    assert rows[1:] == expected_rows(range(1, N + 1))
    assert body.endswith(b"\r\n") and b"\r\n" in body[:40]


async def test_the_date_filter_selects_exactly_the_rows_in_range(client, people):
    job = await start_export(client, date_field="day", **{"from": "2017-08-01", "to": "2017-10-01"}, fields=["id", "day"])
    await wait_for_state(client, job["id"], "completed")
    rows = parse((await result(client, job["id"]))[1])
    want = [i for i in range(1, N + 1) if (i % 12) + 1 in (8, 9)]
    assert rows[0] == ["id", "day"]
    assert [int(r[0]) for r in rows[1:]] == want


async def test_pause_holds_rows_and_bytes_still_and_the_resumed_file_is_byte_identical(client, people):
    whole = await start_export(client)
    await wait_for_state(client, whole["id"], "completed")
    reference = (await result(client, whole["id"]))[1]

    job = await start_export(client, batch_size=10)
    await wait_for(client, job["id"], lambda j: j["progress"].get("processed", 0) > 0)
    await control(client, job["id"], "pause")
    held = await wait_for(client, job["id"], lambda j: j["state"] == "paused" and j["progress"].get("rows_per_second") == 0.0)
    for _ in range(5):
        await asyncio.sleep(0.2)
        now = await get_job(client, job["id"])
        assert (now["progress"]["processed"], now["progress"]["bytes"]) == (
            held["progress"]["processed"],
            held["progress"]["bytes"],
        )
    assert held["progress"]["processed"] < N
    await control(client, job["id"], "resume")
    await wait_for_state(client, job["id"], "completed")
    assert (await result(client, job["id"]))[1] == reference


async def test_terminate_deletes_the_partial_file_and_the_result_is_gone(client, db, people):
    job = await start_export(client, batch_size=10)
    await wait_for(client, job["id"], lambda j: j["progress"].get("processed", 0) > 0)
    await control(client, job["id"], "pause")
    await control(client, job["id"], "terminate")
    await wait_for_state(client, job["id"], "terminated")
    assert await db.db["exports.files"].count_documents({}) == 0
    assert await db.db["exports.chunks"].count_documents({}) == 0
    status, body, _ = await result(client, job["id"])
    assert status == 410


async def test_a_result_before_completion_is_409_with_the_state(make_client):
    client = await make_client(max_running_jobs=1)
    data = await start_import(client, make_csv(20), dataset="people")
    await wait_for_state(client, data["id"], "completed")
    # A running import holds this process's only slot, so the export stays queued.
    blocker = await start_import(client, make_csv(50_000), dataset="other", batch_size=50)
    await wait_for(client, blocker["id"], lambda j: j["progress"].get("processed", 0) > 0)
    job = await start_export(client)
    status, body, _ = await result(client, job["id"])
    assert status == 409
    assert b'"state": "queued"' in body
    await control(client, blocker["id"], "terminate")
    await wait_for_state(client, job["id"], "completed")
    status, _, _ = await result(client, job["id"])
    assert status == 200


async def test_range_requests_reassemble_the_file_exactly(client, people):
    job = await start_export(client)
    await wait_for_state(client, job["id"], "completed")
    whole = (await result(client, job["id"]))[1]
    parts, start, step = [], 0, 70_000
    while start < len(whole):
        status, body, resp = await result(client, job["id"], Range=f"bytes={start}-{start + step - 1}")
        assert status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{min(start + step, len(whole)) - 1}/{len(whole)}"
        parts.append(body)
        start += step
    assert b"".join(parts) == whole
    status, tail, _ = await result(client, job["id"], Range="bytes=-10")
    assert status == 206 and tail == whole[-10:]
    status, _, resp = await result(client, job["id"], Range=f"bytes={len(whole)}-")
    assert status == 416 and resp.headers["Content-Range"] == f"bytes */{len(whole)}"


async def test_if_range_resumes_only_the_same_stored_result(client, people):
    job = await start_export(client)
    await wait_for_state(client, job["id"], "completed")
    status, whole, resp = await result(client, job["id"])
    etag = resp.headers["ETag"]
    status, rest, resp = await result(client, job["id"], Range="bytes=1000-", **{"If-Range": etag})
    assert status == 206 and whole[:1000] + rest == whole
    assert resp.headers["ETag"] == etag
    # Another file than the one the client holds the start of: the whole file, 200.
    status, body, resp = await result(client, job["id"], Range="bytes=1000-", **{"If-Range": '"another-file"'})
    assert status == 200 and body == whole and "Content-Range" not in resp.headers
    # A date is not this service's validator (it sends no Last-Modified): the whole file too.
    status, body, _ = await result(client, job["id"], Range="bytes=1000-", **{"If-Range": "Tue, 01 Jan 2030 00:00:00 GMT"})
    assert status == 200 and body == whole


async def test_formula_cells_are_neutralised_unless_turned_off(client):
    body = b"n,text\n-5,=1+1\n3,+cmd\n-2,@SUM(A1)\n4,-oops\n5,\tx\n6,plain\n"
    job = await start_import(client, body, dataset="sheet", types="n:int")
    await wait_for_state(client, job["id"], "completed")
    safe = await start_export(client, dataset="sheet")
    await wait_for_state(client, safe["id"], "completed")
    rows = parse((await result(client, safe["id"]))[1])
    assert rows[1:] == [["-5", "'=1+1"], ["3", "'+cmd"], ["-2", "'@SUM(A1)"], ["4", "'-oops"], ["5", "'\tx"], ["6", "plain"]]
    raw = await start_export(client, dataset="sheet", neutralize_formulas=False)
    await wait_for_state(client, raw["id"], "completed")
    assert parse((await result(client, raw["id"]))[1])[1] == ["-5", "=1+1"]


@pytest.mark.parametrize(
    ("spec", "status", "parameter"),
    [
        ({"dataset": "nope"}, 404, "dataset"),
        ({"date_field": "day", "from": "2017-31-01"}, 400, "from"),
        ({"date_field": "day", "from": "2018-01-01", "to": "2017-01-01"}, 400, "from"),
        ({"date_field": "when"}, 400, "date_field"),
        ({"date_field": "name"}, 400, "date_field"),
        ({"from": "2017-01-01"}, 400, "date_field"),
        ({"fields": ["id", "password"]}, 400, "fields"),
        ({"fields": ["id"] * 1001}, 400, "fields"),
        ({"fields": [{"$gt": ""}]}, 400, "fields"),
        ({"date_field": {"$ne": None}}, 400, "date_field"),
        ({"batch_size": 0}, 400, "batch_size"),
        ({"dataset": {"$regex": ".*"}}, 400, "dataset"),
    ],
)
async def test_bad_export_requests_are_clear_4xx(client, people, spec, status, parameter):
    body = await start_export(client, expect=status, **spec)
    assert body["type"].startswith("urn:problem:collect-jobs:")
    if parameter:
        assert body.get("parameter") == parameter


async def test_another_orgs_dataset_is_not_found(make_client, people):
    other = await make_client(default_org_id="other-org")
    body = await start_export(other, expect=404)
    assert "no dataset 'people'" in body["detail"]


async def test_a_streamed_export_starts_at_once_and_matches_the_background_file(client, people):
    background = await start_export(client)
    await wait_for_state(client, background["id"], "completed")
    reference = (await result(client, background["id"]))[1]

    resp = await client.post("/api/v1/exports/people.csv")
    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="people.csv"'
    job_id = resp.headers["X-Job-Id"]
    body = await resp.read()
    assert body == reference
    job = await wait_for_state(client, job_id, "completed")
    assert job["params"]["stream"] is True
    listed = await (await client.get("/api/v1/jobs", params={"kind": "export"})).json()
    assert job_id in [j["id"] for j in listed["jobs"]]


async def test_a_streamed_export_pauses_then_resumes_and_aborts_on_terminate(client):
    big = await start_import(client, make_csv(30_000), dataset="big")
    await wait_for_state(client, big["id"], "completed")

    async with client.post("/api/v1/exports/big.csv", params={"batch_size": "100"}) as resp:
        job_id = resp.headers["X-Job-Id"]
        first = await resp.content.read(1000)
        assert first.startswith(b"id,name,day,c3\r\n")
        await control(client, job_id, "pause")
        await wait_for_state(client, job_id, "paused")
        await control(client, job_id, "resume")
        await control(client, job_id, "terminate")
        with pytest.raises(aiohttp.ClientPayloadError):
            while await resp.content.read(65536):
                pass
    await wait_for_state(client, job_id, "terminated")


async def test_a_client_that_disconnects_ends_its_streamed_export_as_terminated(client):
    big = await start_import(client, make_csv(30_000), dataset="big")
    await wait_for_state(client, big["id"], "completed")
    resp = await client.post("/api/v1/exports/big.csv", params={"batch_size": "100"})
    job_id = resp.headers["X-Job-Id"]
    await resp.content.read(100)
    await control(client, job_id, "pause")  # nothing is written while paused: the watch must notice
    resp.close()
    await wait_for_state(client, job_id, "terminated")


async def test_an_export_reads_only_completed_imports_so_running_ones_do_not_change_it(make_client, db):
    client = await make_client(max_imports_per_org=2)
    done = await start_import(client, make_csv(1000, columns=5), types="id:int,day:date")
    await wait_for_state(client, done["id"], "completed")
    running = await start_import(client, make_csv(50_000, columns=5, start=10_001), types="id:int,day:date", batch_size=100)
    await wait_for(client, running["id"], lambda j: j["progress"].get("inserted", 0) >= 500)

    first = await start_export(client)
    assert first["params"]["imports"] == 1
    await wait_for_state(client, first["id"], "completed")
    second = await start_export(client)
    await wait_for_state(client, second["id"], "completed")

    _, one, _ = await result(client, first["id"])
    _, two, _ = await result(client, second["id"])
    assert one == two, "the same export twice gives the same file while another import runs"
    assert parse(one)[1:] == expected_rows(range(1, 1001))
    await control(client, running["id"], "pause")
    await wait_for_state(client, running["id"], "paused")
    paused_export = await start_export(client, include_failed=True)
    assert paused_export["params"]["imports"] == 1, "paused imports are not committed either"
    await control(client, running["id"], "terminate")
    await wait_for_state(client, running["id"], "terminated")
    await wait_for_state(client, paused_export["id"], "completed")


async def test_a_failed_imports_rows_are_exported_only_when_asked(client, db):
    rows = make_csv(600, columns=5).decode().splitlines()
    rows[400] = "x,broken"  # line 401: the job stops here with on_error=fail
    failed = await start_import(
        client, ("\n".join(rows) + "\n").encode(), types="id:int,day:date", on_error="fail", batch_size=100
    )
    await wait_for_state(client, failed["id"], "failed")
    await start_export(client, expect=404)
    job = await start_export(client, include_failed=True)
    await wait_for_state(client, job["id"], "completed")
    _, body, _ = await result(client, job["id"])
    assert len(parse(body)) - 1 == (await get_job(client, failed["id"]))["progress"]["inserted"]
    retry = await control(client, failed["id"], "retry", expect=409)
    assert retry["state"] == "failed" and "cannot be cured by a retry" in retry["detail"]


async def test_an_import_that_completes_after_the_export_was_created_is_not_in_it(make_client, db):
    """The export reads the imports that had finished when it was created
    (params.imports_as_of), found again when it runs, not a stored list of
    their ids: one that completes while the export waits is not read. One
    runner slot: the export waits in the queue until the later import is done."""
    client = await make_client(max_running_jobs=1)
    done = await start_import(client, make_csv(300, columns=5), types="id:int,day:date")
    await wait_for_state(client, done["id"], "completed")
    later = await start_import(client, make_csv(3_000, columns=5, start=10_001), types="id:int,day:date", batch_size=100)
    await wait_for(client, later["id"], lambda j: j["progress"].get("inserted", 0) > 0)
    export = await start_export(client)
    assert export["state"] == "queued" and export["params"]["imports"] == 1
    await wait_for_state(client, later["id"], "completed", timeout=120)
    finished = await wait_for_state(client, export["id"], "completed")
    assert finished["started_at"] >= (await get_job(client, later["id"]))["finished_at"], "it ran after the import completed"
    assert finished["params"]["jobs"] is None, "no list of the imports' ids (null: see ExportParams.jobs)"
    _, body, _ = await result(client, export["id"])
    assert parse(body)[1:] == expected_rows(range(1, 301))
