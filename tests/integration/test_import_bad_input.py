"""Every kind of bad input gets a clear answer, and nothing already stored is lost."""

from __future__ import annotations

import aiohttp
import pytest

from ..support.helpers import make_csv, start_import, wait_for_state

PROBLEM = "application/problem+json"


async def post_raw(client, body: bytes, content_type: str = "text/csv", **params):
    params.setdefault("dataset", "people")
    return await client.post("/api/v1/jobs/import", params=params, data=body, headers={"Content-Type": content_type})


async def assert_problem(resp, status: int, *words: str) -> dict:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    body = await resp.json(content_type=None)
    assert body["status"] == status and body["title"] and body["type"].startswith("urn:problem:")
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


async def assert_nothing_stored(db) -> None:
    assert await db.db["uploads.files"].count_documents({}) == 0
    assert await db.db["uploads.chunks"].count_documents({}) == 0
    assert await db.jobs.count_documents({}) == 0


async def import_rows(client, db, body: bytes, **params) -> tuple[dict, list[dict]]:
    job = await start_import(client, body, **params)
    done = await wait_for_state(client, job["id"], "completed", "failed")
    rows = await db.records.find({"job_id": job["id"]}).sort("row", 1).to_list()
    return done, rows


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", ("empty",)),
        (b"id,name\n", ("no data rows",)),
        (b"id,name\n\n\n", ("no data rows",)),
        (b"\n1,2\n", ("blank",)),
        (b"id,name,id\n1,2,3\n", ("Duplicate", "'id'")),
        (b"id,,name\n1,2,3\n", ("no name", "2")),
        (b"a.b,a_b\n1,2\n", ("Duplicate", "'a_b'")),
        (b"\xff\xfeid,name\n1,2\n", ("UTF-8",)),
        (b"i\x00d,name\n1,2\n", ("NUL",)),
    ],
    ids=[
        "empty",
        "header-only",
        "header-and-blank-lines",
        "blank-header",
        "duplicate-names",
        "empty-name",
        "duplicate-after-mapping",
        "header-not-utf8",
        "header-nul",
    ],
)
async def test_files_that_cannot_be_imported_are_400_and_leave_nothing(client, db, body, words):
    await assert_problem(await post_raw(client, body), 400, *words)
    await assert_nothing_stored(db)


async def test_a_wrong_content_type_is_415(client, db):
    body = await assert_problem(await post_raw(client, make_csv(3), "application/json"), 415, "text/csv")
    assert "multipart/form-data" in body["accepted"]
    await assert_nothing_stored(db)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"dataset": ""}, "dataset"),
        ({"dataset": "../etc"}, "dataset"),
        ({"dataset": "x" * 65}, "dataset"),
        ({"dataset": "$where"}, "dataset"),
        ({"batch_size": "0"}, "batch_size"),
        ({"batch_size": "lots"}, "batch_size"),
        ({"on_error": "ignore"}, "on_error"),
        ({"max_errors": "-1"}, "max_errors"),
        ({"types": "id:integer"}, "types"),
        ({"types": "id"}, "types"),
        ({"types": "nope:int"}, "types"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(client, db, params, parameter):
    body = await assert_problem(await post_raw(client, make_csv(3), **params), 400)
    assert body["parameter"] == parameter
    await assert_nothing_stored(db)


async def test_a_body_over_the_upload_limit_is_413_while_streaming_and_nothing_is_kept(make_client, db):
    client = await make_client(max_upload_bytes=64 * 1024)
    big = make_csv(5000)
    assert len(big) > 64 * 1024

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    try:
        resp = await client.post(
            "/api/v1/jobs/import", params={"dataset": "people"}, data=chunks(), headers={"Content-Type": "text/csv"}
        )
    except aiohttp.ClientError:
        pass  # the server may close the connection before the client finished sending
    else:
        await assert_problem(resp, 413, "MAX_UPLOAD_BYTES")
    await assert_nothing_stored(db)

    resp = await post_raw(client, big)  # with Content-Length: refused before reading
    await assert_problem(resp, 413)
    await assert_nothing_stored(db)


async def test_rows_with_problems_become_row_errors_with_file_line_numbers(client, db):
    body = (
        b"id,name,day\n"  # line 1
        b"1,ok,2017-08-01\n"  # 2
        b"2,too few\n"  # 3
        b"3,too,many,fields\n"  # 4
        b'4,"multi\nline",2017-08-02\n'  # 5-6: kept intact
        b"5,\xff\xfebad utf8,2017-08-03\n"  # 7
        b"6,nul\x00byte,2017-08-04\n"  # 8
        b"seven,not an int,2017-08-05\n"  # 9
        b"8,bad date,2017-13-45\n"  # 10
        b"\n"  # 11: blank, not a row
        b"9,last,2017-08-06"  # 12, no final newline
    )
    done, rows = await import_rows(client, db, body, types="id:int,day:date")

    assert done["state"] == "completed"
    assert [r["data"]["id"] for r in rows] == [1, 4, 9]
    assert rows[1]["data"]["name"] == "multi\nline"
    errors = {e["line"]: e["message"] for e in done["errors"]}
    assert sorted(errors) == [3, 4, 7, 8, 9, 10]
    assert "expected 3 fields, found 2" in errors[3]
    assert "expected 3 fields, found 4" in errors[4]
    assert "UTF-8" in errors[7]
    assert "NUL" in errors[8]
    assert "'id'" in errors[9] and "not an integer" in errors[9]
    assert "'day'" in errors[10] and "ISO 8601" in errors[10]
    assert done["progress"] | {"rows_per_second": 0} == done["progress"] | {
        "processed": 9,
        "inserted": 3,
        "failed": 6,
        "total": 9,
        "rows_per_second": 0,
    }


async def test_a_utf8_bom_is_not_part_of_the_first_header(client, db):
    done, rows = await import_rows(client, db, b"\xef\xbb\xbfid,name\r\n1,a\r\n2,b\r\n", types="id:int")
    assert done["params"]["header"] == ["id", "name"]
    assert [r["data"] for r in rows] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


async def test_header_names_mongodb_cannot_store_are_mapped_and_reported(client, db):
    done, rows = await import_rows(client, db, b"e.mail,$price, name \nx@y,3,z\n", types="$price:int")
    assert done["params"]["column_mapping"] == [
        {"from": "e.mail", "to": "e_mail"},
        {"from": "$price", "to": "_price"},
        {"from": " name ", "to": "name"},
    ]
    assert rows[0]["data"] == {"e_mail": "x@y", "_price": 3, "name": "z"}


async def test_a_field_over_the_size_limit_is_a_row_error(make_client, db):
    client = await make_client(max_field_size=1000)
    body = b"id,blob\n1,small\n2," + b"x" * 5000 + b"\n3,small\n"
    done, rows = await import_rows(client, db, body)
    assert [r["data"]["id"] for r in rows] == ["1", "3"]
    assert [e["line"] for e in done["errors"]] == [3]
    assert "field larger than field limit" in done["errors"][0]["message"]


async def test_empty_typed_cells_are_stored_as_null(client, db):
    done, rows = await import_rows(client, db, b"id,n,ok\n1,,\n2,2.5,yes\n", types="id:int,n:float,ok:bool")
    assert [r["data"] for r in rows] == [{"id": 1, "n": None, "ok": None}, {"id": 2, "n": 2.5, "ok": True}]


async def test_on_error_fail_stops_at_the_first_bad_row_and_terminate_removes_what_was_written(client, db):
    body = make_csv(300) + b"oops\n" + make_csv(300, start=301).split(b"\n", 1)[1]
    job = await start_import(client, body, on_error="fail", batch_size=100)
    failed = await wait_for_state(client, job["id"], "failed")
    assert "line 302" in failed["error"] and "on_error=fail" in failed["error"]
    assert failed["errors"][0]["line"] == 302
    assert await db.records.count_documents({"job_id": job["id"]}) == 300

    resp = await client.post(f"/api/v1/jobs/{job['id']}/terminate")
    assert resp.status == 200
    await wait_for_state(client, job["id"], "terminated")
    assert await db.records.count_documents({"job_id": job["id"]}) == 0


async def test_more_row_errors_than_max_errors_fails_the_job(client, db):
    body = b"id\n" + b"x\n" * 50
    job = await start_import(client, body, types="id:int", max_errors=10, batch_size=5)
    failed = await wait_for_state(client, job["id"], "failed")
    assert "max_errors=10" in failed["error"]


async def test_the_first_100_row_errors_are_kept_and_all_are_counted(client, db):
    body = b"id\n" + b"x\n" * 250 + b"1\n"
    done, rows = await import_rows(client, db, body, types="id:int", max_errors=1000)
    assert len(done["errors"]) == 100
    assert done["errors"][0]["line"] == 2 and done["errors"][-1]["line"] == 101
    assert done["progress"]["failed"] == 250
    assert len(rows) == 1


async def test_a_multipart_upload_reads_the_file_field(client, db):
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("file", make_csv(25), filename="baseline.csv", content_type="text/csv")
    resp = await client.post("/api/v1/jobs/import", params={"dataset": "people"}, data=form)
    assert resp.status == 202
    job = await resp.json()
    assert resp.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["params"]["filename"] == "baseline.csv"
    await wait_for_state(client, job["id"], "completed")
    assert await db.records.count_documents({"job_id": job["id"]}) == 25


async def test_a_multipart_upload_without_a_file_field_is_400(client, db):
    form = aiohttp.FormData()
    form.add_field("other", make_csv(5).decode(), filename="x.csv", content_type="text/csv")
    await assert_problem(await client.post("/api/v1/jobs/import", params={"dataset": "p"}, data=form), 400, "'file'")
    await assert_nothing_stored(db)


async def test_unknown_routes_and_methods_are_problem_json(client):
    await assert_problem(await client.get("/api/v1/nothing-here"), 404)
    resp = await client.delete("/api/v1/jobs")
    await assert_problem(resp, 405)
    assert "GET" in resp.headers["Allow"]
