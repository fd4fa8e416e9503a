"""Findings 3 and 8: request bodies and headers that cannot blow up. A
compressed upload is refused before a byte of it is inflated or stored; a JSON
body has a size and a depth limit; a Range of 5,000 digits and a header line of
100 KB are client errors, never a 500."""

from __future__ import annotations

import gzip
import io
import json
import zlib

import aiohttp
import pytest

from .conftest import exported, imported


def bomb(encoding: str, inflated_bytes: int) -> bytes:
    """A CSV that inflates to ``inflated_bytes`` (about 10 KB per 10 MB)."""
    csv = b"id,name,day,c3\n" + b"1,2,3,4\n" * (inflated_bytes // 8)
    return gzip.compress(csv, compresslevel=9) if encoding.lower() == "gzip" else zlib.compress(csv, 9)


# br too in production, where the server never inflates (auto_decompress=False
# in service/__main__.py); the test server inflates what it can decode and
# refuses br itself, with a 400 of its own.
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP"])
async def test_a_compressed_upload_is_refused_with_415_naming_the_encoding_and_nothing_is_stored(orgs, db, encoding):
    body = bomb(encoding, 50 * 1024 * 1024)
    assert len(body) < 200 * 1024
    for path in ("/api/v1/jobs/import?dataset=people", "/api/v1/jobs/teams"):
        resp = await orgs.operator_a.post(
            path, data=io.BytesIO(body), headers={"Content-Type": "text/csv", "Content-Encoding": encoding}
        )
        problem = await resp.json(content_type=None)
        assert resp.status == 415, problem
        assert resp.content_type == "application/problem+json"
        assert encoding.lower() in problem["detail"] and problem["parameter"] == "Content-Encoding"
    assert await db.jobs.count_documents({}) == 0
    assert await db.uploads.files.count_documents({}) == 0
    assert await db.uploads.chunks.count_documents({}) == 0


async def test_identity_content_encoding_is_accepted(orgs):
    resp = await orgs.operator_a.post(
        "/api/v1/jobs/import?dataset=people",
        data=b"id,name\n1,a\n",
        headers={"Content-Type": "text/csv", "Content-Encoding": "identity"},
    )
    assert resp.status == 202, await resp.text()


async def test_a_json_body_nested_200000_deep_is_a_client_error_not_a_500(orgs):
    # 400 KB: over the size limit before its depth is looked at.
    deep = "[" * 200_000 + "]" * 200_000
    resp = await orgs.viewer.post("/api/v1/downloads", data=deep, headers={"Content-Type": "application/json"})
    assert resp.status == 413, await resp.text()
    # Under the size limit, nested deeper than the depth limit (json.loads would
    # raise RecursionError at a few thousand levels).
    for body in ("[" * 50_000 + "]" * 50_000, '{"job_id": ' + "[" * 33 + "]" * 33 + "}", '{"a":' * 20_000 + "1" + "}" * 20_000):
        resp = await orgs.viewer.post("/api/v1/downloads", data=body, headers={"Content-Type": "application/json"})
        problem = await resp.json(content_type=None)
        assert resp.status == 400, problem
        assert "deep" in problem["detail"]
    # Brackets inside strings are text, not nesting.
    resp = await orgs.viewer.post("/api/v1/downloads", json={"job_id": "[" * 10_000})
    assert resp.status == 404, await resp.text()


async def test_a_json_body_over_the_size_limit_is_a_413(orgs):
    huge = json.dumps({"job_id": "x" * (300 * 1024)})
    resp = await orgs.viewer.post("/api/v1/downloads", data=huge, headers={"Content-Type": "application/json"})
    problem = await resp.json(content_type=None)
    assert resp.status == 413, problem
    assert problem["limit"] == 256 * 1024


async def test_a_deep_json_body_is_refused_on_an_idempotent_replay_too(orgs):
    """The replay path hashes the body before the handler reads it."""
    await imported(orgs.operator_a)
    export = await exported(orgs.operator_a)
    key = {"Idempotency-Key": "replay-1"}
    first = await orgs.viewer.post("/api/v1/downloads", json={"job_id": export["id"]}, headers=key)
    assert first.status == 201, await first.text()
    deep = "[" * 50_000 + "]" * 50_000
    resp = await orgs.viewer.post("/api/v1/downloads", data=deep, headers={**key, "Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()


async def test_a_range_of_5000_digits_is_never_a_500(orgs):
    await imported(orgs.operator_a)
    export = await exported(orgs.operator_a)
    url = f"/api/v1/jobs/{export['id']}/result"
    whole = await (await orgs.viewer.get(url)).read()
    digits = "9" * 5000
    resp = await orgs.viewer.get(url, headers={"Range": f"bytes={digits}-"})
    assert resp.status == 416, await resp.text()
    assert resp.headers["Content-Range"] == f"bytes */{len(whole)}"
    resp = await orgs.viewer.get(url, headers={"Range": f"bytes=0-{digits}"})
    assert resp.status == 206 and await resp.read() == whole
    resp = await orgs.viewer.get(url, headers={"Range": f"bytes=-{digits}"})
    assert resp.status == 206 and await resp.read() == whole
    resp = await orgs.viewer.get(url, headers={"Range": "bytes=5-9"})
    assert resp.status == 206 and await resp.read() == whole[5:10]


async def test_a_huge_header_line_is_a_client_error(orgs, auth_client):
    """aiohttp refuses these itself (a plain-text 400) before any handler runs;
    a session of its own, since that 400 is not the API's problem+json."""
    url = auth_client.make_url("/api/v1/jobs")
    async with aiohttp.ClientSession(headers=orgs.viewer.headers) as session:
        for headers in ({"X-Junk": "a" * 100_000}, {"Range": "bytes=" + "1" * 100_000 + "-"}):
            async with session.get(url, headers=headers) as resp:
                assert 400 <= resp.status < 500, resp.status
        async with session.get(f"{url}?{'a=1&' * 5_000}") as resp:
            assert 400 <= resp.status < 500, resp.status
        async with session.get(url) as resp:
            assert resp.status == 200
