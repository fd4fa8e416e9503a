"""Finding 1: one org cannot take every download slot. Stream slots are
reservations taken in one conditional write before the download starts (per
org, across replicas; per replica), released when the download ends however
it ends; a client that stops reading loses its download after
STREAM_IDLE_SECONDS, and a slot whose holder died is reclaimed."""

from __future__ import annotations

import asyncio
import datetime as dt

from ..support.helpers import make_csv, wait_for_state
from .conftest import Stalled, imported

BIG = 20_000  # rows: far more CSV than a stalled client's buffers take in


async def job_exists(caller, job_id: str) -> None:
    """The download's headers (with X-Job-Id) go out as its job is created."""
    for _ in range(500):
        if (await caller.get(f"/api/v1/jobs/{job_id}")).status == 200:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no job {job_id}")


async def slots_free(db, org: str) -> None:
    for _ in range(500):
        doc = await db.reservations.find_one({"_id": f"{org}/streams"})
        if doc["used"] == 0:
            assert doc["held"] == {}, doc
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{org}'s stream slots are still held: {doc}")


async def test_twelve_concurrent_downloads_of_one_org_get_its_two_slots_and_another_org_still_gets_one(orgs_with):
    orgs = await orgs_with(max_streams_per_org=2, max_streams=8)
    await imported(orgs.operator_a, make_csv(BIG))
    await imported(orgs.operator_b)
    # The attacker needs an operator's right to start downloads at all (tests/hostile/test_roles.py).
    attempts = await asyncio.gather(*(Stalled.open(orgs.operator_a, "POST", "/api/v1/exports/people.csv") for _ in range(12)))
    try:
        statuses = sorted(a.status for a in attempts)
        assert statuses.count(200) == 2 and statuses.count(429) == 10, statuses
        refused = next(a for a in attempts if a.status == 429)
        assert int(refused.headers["Retry-After"]) > 0
        # Org B is not locked out while org A's two downloads hang.
        resp = await orgs.operator_b.post("/api/v1/exports/people.csv")
        assert resp.status == 200, await resp.text()
        assert (await resp.text()).count("\n") == 21
    finally:
        for a in attempts:
            a.close()
    # The slots are released when the clients leave: org A downloads again.
    for a in attempts:
        if a.status == 200:
            await job_exists(orgs.operator_a, a.headers["X-Job-Id"])
            await wait_for_state(orgs.operator_a, a.headers["X-Job-Id"], "terminated", timeout=30)
    resp = await orgs.operator_a.post("/api/v1/exports/people.csv")
    assert resp.status == 200, await resp.text()
    await resp.read()


async def test_a_client_that_stops_reading_loses_its_download_after_stream_idle_seconds(orgs_with, db):
    orgs = await orgs_with(max_streams_per_org=1, stream_idle_seconds=1.0)
    # ~7 MB of CSV: more than the server's socket buffer can grow to (tcp_wmem's 4 MB).
    await imported(orgs.operator_a, make_csv(12_000, columns=60))
    stalled = await Stalled.open(orgs.operator_a, "POST", "/api/v1/exports/people.csv")
    try:
        assert stalled.status == 200
        await job_exists(orgs.operator_a, stalled.headers["X-Job-Id"])
        job = await wait_for_state(orgs.operator_a, stalled.headers["X-Job-Id"], "terminated", "failed", timeout=30)
        assert job["state"] == "terminated", job
        assert "STREAM_IDLE_SECONDS" in (job["error"] or ""), job
        # Its slot is free again (given back as its handler returns, just after the job ended).
        await slots_free(db, "org-a")
        resp = await orgs.operator_a.post("/api/v1/exports/people.csv?fields=id")
        assert resp.status == 200, await resp.text()
        await resp.read()
    finally:
        stalled.close()


async def test_a_slot_whose_download_died_with_its_replica_is_reclaimed(orgs_with, db):
    """A replica that dies holding slots cannot release them: a slot names its
    job, and a reservation that finds the org full reclaims every slot whose
    job is finished, or missing and older than the grace period."""
    orgs = await orgs_with(max_streams_per_org=2)
    await imported(orgs.operator_a)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    finished = (await db.jobs.find_one({"kind": "import"}))["_id"]  # a completed job holds nothing
    await db.reservations.insert_one(
        {
            "_id": "org-a/streams",
            "org_id": "org-a",
            "scope": "streams",
            "used": 2,
            "held": {"0123456789abcdef01234567": {"n": 1, "at": old}, finished: {"n": 1, "at": old}},
        }
    )
    resp = await orgs.operator_a.post("/api/v1/exports/people.csv")
    assert resp.status == 200, await resp.text()
    await resp.read()
    await slots_free(db, "org-a")  # the download's own slot goes as its handler returns
