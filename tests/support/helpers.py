"""Helpers for driving the service the way a user does: over HTTP, polling."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp.test_utils import TestClient

FINAL = {"completed", "terminated", "failed"}


def make_csv(rows: int, *, columns: int = 4, header: Iterable[str] | None = None, start: int = 1) -> bytes:
    """``rows`` data rows: id (int), name, day (ISO date), then filler columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(header) if header else ["id", "name", "day"] + [f"c{i}" for i in range(3, columns)]
    writer.writerow(names)
    for i in range(start, start + rows):
        values = [i, f"name {i}", f"2017-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}"]
        values += [f"v{i}-{j}" for j in range(3, len(names))]
        writer.writerow(values[: len(names)])
    return out.getvalue().encode()


async def post_csv(client: TestClient, path: str, body: bytes, expect: int, params: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(
        path, params={k: str(v) for k, v in params.items()}, data=io.BytesIO(body), headers={"Content-Type": "text/csv"}
    )
    payload = await resp.json(content_type=None)
    assert resp.status == expect, payload
    return payload


async def start_import(client: TestClient, body: bytes, *, expect: int = 202, **params: Any) -> dict[str, Any]:
    params.setdefault("dataset", "people")
    return await post_csv(client, "/api/v1/jobs/import", body, expect, params)


async def get_job(client: TestClient, job_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/jobs/{job_id}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def control(client: TestClient, job_id: str, action: str, *, expect: int = 200) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/jobs/{job_id}/{action}")
    payload = await resp.json(content_type=None)
    assert resp.status == expect, payload
    return payload


async def wait_for(
    client: TestClient,
    job_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 60.0,
    what: str = "condition",
) -> dict[str, Any]:
    """Polls the job over HTTP until ``predicate`` holds; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    job = await get_job(client, job_id)
    while not predicate(job):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; job is {job['state']}: {job['progress']}")
        await asyncio.sleep(0.02)
        job = await get_job(client, job_id)
    return job


async def wait_for_state(client: TestClient, job_id: str, *states: str, timeout: float = 60.0) -> dict[str, Any]:
    return await wait_for(client, job_id, lambda j: j["state"] in states, timeout=timeout, what=f"state {states}")


async def wait_until_processed(client: TestClient, job_id: str, at_least: int = 1) -> dict[str, Any]:
    return await wait_for(
        client, job_id, lambda j: j["progress"].get("processed", 0) >= at_least, what=f"{at_least} rows processed"
    )


async def wait_until_settled(client: TestClient, job_id: str) -> dict[str, Any]:
    """A pause has taken effect once the job shows ``paused`` (it shows
    ``pausing`` until its runner has stopped with nothing in flight)."""
    return await wait_for_state(client, job_id, "paused")


# -- teams -----------------------------------------------------------------

TEAM_HEADER = ("team", "manager_name", "manager_phone", "members")

# Area codes whose 555 numbers phonenumbers accepts (211 is not one of them):
# managers 1-9999 are +1 201 555 xxxx, members 1-9999 +1 202 555 xxxx, and so on.
MANAGER_AREAS = (201, 231, 234, 235, 236, 239)
MEMBER_AREAS = (202, 203, 204, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 220)


def manager_phone(i: int) -> str:
    return f"+1{MANAGER_AREAS[i // 10_000]}555{i % 10_000:04d}"


def member_phone(i: int) -> str:
    return f"+1{MEMBER_AREAS[i // 10_000]}555{i % 10_000:04d}"


def _written(phone: str) -> str:
    """+12025550123 as people write it: 202-555-0123."""
    return f"{phone[2:5]}-{phone[5:8]}-{phone[8:]}"


def team_rows(count: int, *, start: int = 1, members: int = 2) -> list[list[str]]:
    """Rows of a correct teams sheet, phones written the way people type them:
    team i is managed by manager i, and its members are members 10i+1...10i+k."""
    return [
        [
            f"Team {i}",
            f"Manager {i}",
            "({}) {}-{}".format(*_written(manager_phone(i)).split("-")),
            ";".join(_written(member_phone(i * 10 + k)) for k in range(1, members + 1)),
        ]
        for i in range(start, start + count)
    ]


def shift_down(rows: list[list[str]], column: int, by: int) -> list[list[str]]:
    """The sheet after one column slid down ``by`` rows: its first cells are empty
    and its last values land in new rows below the data."""
    width = len(rows[0])
    shifted = [list(r) for r in rows] + [[""] * width for _ in range(by)]
    values = [r[column] for r in rows]
    for i, row in enumerate(shifted):
        row[column] = values[i - by] if 0 <= i - by < len(values) else ""
    return shifted


def sheet(rows: Iterable[Iterable[str]], header: Iterable[str] = TEAM_HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(header))
    writer.writerows(rows)
    return out.getvalue().encode()


async def post_teams(client: TestClient, body: bytes, *, expect: int = 202, **params: Any) -> dict[str, Any]:
    return await post_csv(client, "/api/v1/jobs/teams", body, expect, params)


async def snapshot(db: Any) -> dict[str, list[dict[str, Any]]]:
    """Every document of teams and users, in _id order: what "identical to
    before the job" is checked against."""
    return {
        "teams": await db.teams.find().sort("_id", 1).to_list(None),
        "users": await db.users.find().sort("_id", 1).to_list(None),
    }
