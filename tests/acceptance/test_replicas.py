"""Durability with real processes: several `python -m service` replicas on one
database, killed, stopped and restarted mid-job, and the database restarted."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from ..support.devdb import DevDatabase, with_database
from ..support.helpers import make_csv
from ..support.procs import ServiceProcess, exits_within
from .api import FAST

N = 100_000  # 200,000 in earlier rounds: the same failovers, half the CI time


@pytest.fixture
async def records(service_uri):
    client = AsyncMongoClient(service_uri)
    yield client.get_default_database()["records"]
    await client.close()


async def assert_each_row_once(records, job_id: str, n: int) -> None:
    """_ids are unique and encode the row number, so n documents whose _ids all
    lie in the job's range for rows 1..n hold each row exactly once. (Counts, not
    distinct(): FerretDB's distinct is far too slow on 200,000 documents.)"""
    assert await records.count_documents({"job_id": job_id}) == n
    first = await records.find_one({"job_id": job_id}, {"_id": 1})
    prefix = first["_id"].rsplit(":", 1)[0]
    in_range = {"_id": {"$gte": f"{prefix}:{1:010d}", "$lte": f"{prefix}:{n:010d}"}, "job_id": job_id}
    assert await records.count_documents(in_range) == n


async def import_on_two_replicas(spawn, api, rows: int, at_least: int, **params):
    """Starts replicas a and b, an import of ``rows`` rows, and waits until it has
    processed ``at_least``; returns the job, its owner and the other replica."""
    a, b = spawn("a", **FAST), spawn("b", **FAST)
    job = await api.start_import(a, make_csv(rows), **params)
    running = await api.wait(a, job["id"], lambda j: j["progress"].get("processed", 0) >= at_least and j["owner"])
    assert running["owner"] in (a.name, b.name), running["owner"]
    owner, other = (a, b) if running["owner"] == a.name else (b, a)
    return job, owner, other


async def finishes_exactly(api, proc, records, job_id: str, n: int) -> dict:
    done = await api.wait(proc, job_id, lambda j: j["state"] in ("completed", "failed"), "completion")
    assert done["state"] == "completed", done
    await assert_each_row_once(records, job_id, n)
    return done


async def test_a_pause_sent_to_another_replica_stops_the_owners_writes_within_a_tick(spawn, api, records):
    job, owner, other = await import_on_two_replicas(spawn, api, N, 1, batch_size=500)

    pausing = await api.control(other, job["id"], "pause")
    assert pausing["state"] == "pausing"
    at_response = await records.count_documents({"job_id": job["id"]})
    settled = await api.wait(owner, job["id"], lambda j: j["state"] == "paused", "the owner to stop")
    stopped_at = await records.count_documents({"job_id": job["id"]})
    # The owner sees the request at its next checkpoint (each batch reads the state).
    assert stopped_at - at_response <= 2 * 500
    assert settled["progress"]["inserted"] == stopped_at
    watch_until = time.monotonic() + 1.5
    while time.monotonic() < watch_until:
        assert await records.count_documents({"job_id": job["id"]}) == stopped_at
        await asyncio.sleep(0.1)

    await api.control(other, job["id"], "resume")
    await finishes_exactly(api, other, records, job["id"], N)


async def test_kill_9_of_the_owner_mid_import_leaves_another_replica_to_finish_exactly(spawn, api, records):
    job, owner, survivor = await import_on_two_replicas(spawn, api, N, 20_000)

    owner.signal(signal.SIGKILL)
    owner.wait(10)
    adopted = await api.wait(survivor, job["id"], lambda j: j["owner"] == survivor.name, "adoption")
    assert adopted["state"] in ("running", "completed")
    done = await finishes_exactly(api, survivor, records, job["id"], N)
    assert done["progress"]["inserted"] == N


async def test_sigterm_hands_the_job_over_at_once_and_the_process_exits_within_the_grace_period(spawn, api, records):
    job, owner, survivor = await import_on_two_replicas(spawn, api, N, 20_000)

    signalled = time.monotonic()
    owner.signal(signal.SIGTERM)
    code, took = exits_within(owner, 10)
    assert code == 0 and took < 5 + 2, took
    await api.wait(survivor, job["id"], lambda j: j["owner"] == survivor.name, "adoption")
    # Released, not expired: adopted well before a lease could run out.
    assert time.monotonic() - signalled < float(FAST["JOB_LEASE_SECONDS"]) + took
    await finishes_exactly(api, survivor, records, job["id"], N)


async def test_kill_9_while_terminating_the_rollback_completes_after_adoption(spawn, api, records):
    job, owner, survivor = await import_on_two_replicas(spawn, api, N, 40_000)

    done = await api.kill_owner_mid_rollback(
        owner, survivor, job["id"], lambda j: 0 < j["progress"].get("rolled_back", 0) < j["progress"]["inserted"]
    )
    assert done["owner"] is None
    assert await records.count_documents({"job_id": job["id"]}) == 0


async def test_a_paused_job_stays_paused_across_a_restart_and_resumes_on_the_new_process(spawn, api, records):
    first = spawn("first", **FAST)
    job = await api.start_import(first, make_csv(50_000), batch_size=500)
    await api.wait(first, job["id"], lambda j: j["progress"].get("processed", 0) > 0)
    await api.control(first, job["id"], "pause")
    held = await api.wait(first, job["id"], lambda j: j["state"] == "paused")
    first.signal(signal.SIGTERM)
    exits_within(first, 10)

    second = spawn("second", **FAST)
    for _ in range(4):  # several ticks: nothing adopts or runs a paused job
        await asyncio.sleep(0.5)
        now = await api.job(second, job["id"])
        assert now["state"] == "paused" and now["progress"]["inserted"] == held["progress"]["inserted"]
    await api.control(second, job["id"], "resume")
    done = await finishes_exactly(api, second, records, job["id"], 50_000)
    assert done["owner"] is None


async def test_the_database_restarting_mid_import_ends_complete_and_exact(tmp_path, api):
    database = DevDatabase()
    database.start()
    uri = with_database(database.uri, "outage")
    proc = ServiceProcess(uri, tmp_path, "svc", DB_RETRY_SECONDS="60", **FAST).start()
    client = AsyncMongoClient(uri)
    try:
        job = await api.start_import(proc, make_csv(N), batch_size=200)
        before = await api.wait(proc, job["id"], lambda j: j["progress"].get("processed", 0) >= 2_000)
        database.stop()
        assert before["state"] == "running" and before["progress"]["processed"] < N // 2
        async with api.http.get(f"{proc.url}/healthz") as resp:
            assert resp.status == 200, "liveness never depends on the database"
        async with api.http.get(f"{proc.url}/readyz") as resp:
            assert resp.status == 503
        # Longer than the client's 5 s server selection, so operations really
        # fail and the job's own retry (not just PyMongo's) is exercised.
        await asyncio.sleep(7)
        database.start()
        done = await api.wait(proc, job["id"], lambda j: j["state"] in ("completed", "failed"), "the end", timeout=180)
        assert done["state"] == "completed", done
        await assert_each_row_once(client.get_default_database()["records"], job["id"], N)
        # The job's own retry ran: "unreachable" if its ping failed too, "slow" if
        # the database was back by the time it asked.
        assert re.search(f"job {job['id']}: database (unreachable|slow)", proc.log()), "the job's own retry ran"
    finally:
        proc.stop()
        await client.close()
        database.close()


async def test_a_streamed_export_whose_replica_dies_ends_terminated_and_the_download_fails(spawn, api):
    a, b = spawn("a", **FAST), spawn("b", **FAST)
    data = await api.start_import(a, make_csv(30_000), dataset="big")
    await api.wait(a, data["id"], lambda j: j["state"] == "completed")

    async with api.http.post(f"{a.url}/api/v1/exports/big.csv", params={"batch_size": "100"}) as resp:
        job_id = resp.headers["X-Job-Id"]
        assert (await resp.content.read(100)).startswith(b"id,name,day,c3")
        await api.control(b, job_id, "pause")  # paused: a paused stream must be swept too
        await api.wait(b, job_id, lambda j: j["state"] == "paused")
        a.signal(signal.SIGKILL)
        a.wait(10)
        with pytest.raises(aiohttp.ClientPayloadError):
            while await resp.content.read(65536):
                pass
    done = await api.wait(b, job_id, lambda j: j["state"] == "terminated", "the sweep")
    assert "stopped" in done["error"]


async def test_kill_9_of_an_exports_owner_leaves_another_replica_to_write_the_whole_file(spawn, api):
    a, b = spawn("a", **FAST), spawn("b", **FAST)
    data = await api.start_import(a, make_csv(30_000), dataset="big")
    await api.wait(a, data["id"], lambda j: j["state"] == "completed")
    async with api.http.post(f"{a.url}/api/v1/jobs/export", json={"dataset": "big", "batch_size": 50}) as resp:
        assert resp.status == 202
        job = await resp.json()
    running = await api.wait(a, job["id"], lambda j: j["progress"].get("processed", 0) >= 1_000 and j["owner"])
    owner, survivor = (a, b) if running["owner"] == a.name else (b, a)

    owner.signal(signal.SIGKILL)
    owner.wait(10)
    done = await api.wait(survivor, job["id"], lambda j: j["state"] in ("completed", "failed"), "completion")
    assert done["state"] == "completed" and done["progress"]["processed"] == 30_000, done
    async with api.http.get(f"{survivor.url}/api/v1/jobs/{job['id']}/result") as resp:
        body = await resp.read()
    lines = body.split(b"\r\n")
    assert lines[0] == b"id,name,day,c3" and lines[-1] == b""
    assert len(lines) == 30_000 + 2
    assert [int(line.split(b",", 1)[0]) for line in lines[1:-1]] == list(range(1, 30_001))
