"""Exactly one writer per job, with real processes: a replica stalled past its
lease (SIGSTOP) writes nothing once another has adopted its job; a pause is
reported only once writes have stopped; a database away for longer than
DB_RETRY_SECONDS fails the job with its upload kept, and a retry finishes it;
a rollback that keeps failing backs off and lets the org's queue move;
admission never exceeds an org's limit across replicas."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from ..support.devdb import DevDatabase, with_database
from ..support.helpers import make_csv
from ..support.procs import ServiceProcess
from .api import FAST
from .test_replicas import assert_each_row_once, finishes_exactly, import_on_two_replicas

N = 200_000  # the size, for the stall of an import
SMALLER = 60_000  # elsewhere: enough batches to act on, quick to count on FerretDB
LEASE = float(FAST["JOB_LEASE_SECONDS"])


@pytest.fixture
async def store(service_uri):
    client = AsyncMongoClient(service_uri)
    yield client.get_default_database()
    await client.close()


async def wait_log(proc: ServiceProcess, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log():
        assert time.monotonic() < deadline, f"{proc.name} never logged {text!r}"
        await asyncio.sleep(0.1)


async def stall_owner_until_adopted(api, owner: ServiceProcess, survivor: ServiceProcess, job_id: str) -> dict:
    """SIGSTOPs the owner and waits until the survivor has adopted its job."""
    owner.signal(signal.SIGSTOP)
    return await api.wait(survivor, job_id, lambda j: j["owner"] == survivor.name, "adoption", timeout=LEASE * 10)


@pytest.mark.timeout(900)
async def test_a_stalled_owner_that_wakes_after_adoption_writes_nothing_and_gives_the_job_up(spawn, api, store):
    job, owner, survivor = await import_on_two_replicas(spawn, api, N, 20_000, batch_size=500)
    adopted = await stall_owner_until_adopted(api, owner, survivor, job["id"])
    assert adopted["epoch"] > job["epoch"]
    done = await finishes_exactly(api, survivor, store["records"], job["id"], N)

    owner.signal(signal.SIGCONT)
    await wait_log(owner, f"job {job['id']} left this replica")
    after = await api.job(survivor, job["id"])
    assert (after["state"], after["epoch"], after["progress"]) == ("completed", done["epoch"], done["progress"])
    await assert_each_row_once(store["records"], job["id"], N)


@pytest.mark.timeout(900)
async def test_a_stalled_owner_that_wakes_after_its_job_was_rolled_back_brings_no_row_back(spawn, api, store):
    """The strongest check that nothing is written after an adoption: the job's
    rows are all deleted by the adopter before the stalled owner wakes up, so
    any batch it sent afterwards would show."""
    job, owner, survivor = await import_on_two_replicas(spawn, api, SMALLER, 10_000, batch_size=500)
    await stall_owner_until_adopted(api, owner, survivor, job["id"])
    await api.control(survivor, job["id"], "terminate")
    await api.wait(survivor, job["id"], lambda j: j["state"] == "terminated", "the rollback", timeout=300)
    assert await store["records"].count_documents({"job_id": job["id"]}) == 0

    owner.signal(signal.SIGCONT)
    await wait_log(owner, f"job {job['id']} left this replica")
    await asyncio.sleep(1)  # a write it had queued would land now; none may
    assert await store["records"].count_documents({"job_id": job["id"]}) == 0
    assert (await api.job(owner, job["id"]))["state"] == "terminated"


@pytest.mark.timeout(900)
async def test_a_stalled_owner_of_a_rollback_wakes_to_find_it_finished_and_writes_nothing(spawn, api, store):
    job, owner, survivor = await import_on_two_replicas(spawn, api, SMALLER, 20_000, batch_size=500)
    await api.control(survivor, job["id"], "terminate")
    await api.wait(survivor, job["id"], lambda j: j["state"] == "terminating" and j["owner"] == owner.name)
    await stall_owner_until_adopted(api, owner, survivor, job["id"])
    await api.wait(survivor, job["id"], lambda j: j["state"] == "terminated", "the rollback", timeout=300)

    owner.signal(signal.SIGCONT)
    await wait_log(owner, f"job {job['id']} left this replica")
    assert await store["records"].count_documents({"job_id": job["id"]}) == 0
    assert (await api.job(owner, job["id"]))["state"] == "terminated"


@pytest.mark.timeout(900)
async def test_kill_9_during_a_rollback_that_has_started_is_finished_by_the_other_replica(spawn, api, store):
    job, owner, survivor = await import_on_two_replicas(spawn, api, N, 150_000, batch_size=1000)
    await api.control(survivor, job["id"], "terminate")
    # Read straight from the database, often: the rollback's ranges (30,000
    # rows each) may pass quickly, and the kill must land between two of them.
    deadline = time.monotonic() + 600
    while True:
        run = await store["job_progress"].find_one({"_id": job["id"]}, {"progress": 1, "epoch": 1})
        rolled_back = run["progress"].get("rolled_back", 0)
        if 0 < rolled_back < run["progress"]["inserted"]:
            break
        assert time.monotonic() < deadline, run["progress"]
        await asyncio.sleep(0.01)
    owner.signal(signal.SIGKILL)
    owner.wait(10)
    done = await api.wait(survivor, job["id"], lambda j: j["state"] == "terminated", "the rollback", timeout=600)
    assert done["progress"]["rolled_back"] >= rolled_back
    assert await store["records"].count_documents({"job_id": job["id"]}) == 0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("to", ["owner", "other"])
async def test_a_paused_import_writes_nothing_once_it_shows_paused(spawn, api, store, to):
    job, owner, other = await import_on_two_replicas(spawn, api, SMALLER, 2_000, batch_size=500)
    target = owner if to == "owner" else other
    pausing = await api.control(target, job["id"], "pause")
    assert pausing["state"] == "pausing"
    at_response = await store["records"].count_documents({"job_id": job["id"]})
    paused = await api.wait(target, job["id"], lambda j: j["state"] == "paused", "paused")
    stopped_at = await store["records"].count_documents({"job_id": job["id"]})
    # README: after the pause response, at most one batch lands when the owner
    # got the request, and at most two when another replica did.
    assert stopped_at - at_response <= (1 if to == "owner" else 2) * 500
    assert paused["progress"]["inserted"] == stopped_at
    watch_until = time.monotonic() + 2
    while time.monotonic() < watch_until:
        assert await store["records"].count_documents({"job_id": job["id"]}) == stopped_at
        await asyncio.sleep(0.1)
    await api.control(other, job["id"], "resume")
    await finishes_exactly(api, owner, store["records"], job["id"], SMALLER)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("to", ["owner", "other"])
async def test_a_paused_export_writes_nothing_once_it_shows_paused(spawn, api, store, to):
    a, b = spawn("a", **FAST), spawn("b", **FAST)
    data = await api.start_import(a, make_csv(60_000), dataset="big")
    await api.wait(a, data["id"], lambda j: j["state"] == "completed", timeout=300)
    async with api.http.post(f"{a.url}/api/v1/jobs/export", json={"dataset": "big", "batch_size": 100}) as resp:
        assert resp.status == 202
        job = await resp.json()
    running = await api.wait(a, job["id"], lambda j: j["progress"].get("processed", 0) >= 500 and j["owner"])
    owner, other = (a, b) if running["owner"] == a.name else (b, a)
    target = owner if to == "owner" else other

    assert (await api.control(target, job["id"], "pause"))["state"] == "pausing"
    paused = await api.wait(target, job["id"], lambda j: j["state"] == "paused", "paused")
    chunks = store["exports.chunks"]
    # Each attempt writes its own file, "<job>:<epoch>".
    file_id = {"$gte": f"{job['id']}:", "$lt": f"{job['id']};"}
    written = await chunks.count_documents({"files_id": file_id})
    assert written > 0
    watch_until = time.monotonic() + 2
    while time.monotonic() < watch_until:
        now = await api.job(other, job["id"])
        assert now["progress"]["processed"] == paused["progress"]["processed"]
        assert now["progress"]["bytes"] == paused["progress"]["bytes"]
        assert await chunks.count_documents({"files_id": file_id}) == written
        await asyncio.sleep(0.1)
    assert paused["progress"]["processed"] < 60_000
    await api.control(other, job["id"], "resume")
    done = await api.wait(owner, job["id"], lambda j: j["state"] == "completed", timeout=300)
    assert done["progress"]["processed"] == 60_000


async def test_a_database_away_longer_than_db_retry_seconds_fails_the_job_and_retry_finishes_it(tmp_path, api):
    database = DevDatabase()
    database.start()
    uri = with_database(database.uri, "outage")
    env = {**FAST, "DB_RETRY_SECONDS": "3", "DB_TIMEOUT_SECONDS": "2"}  # fail fast on purpose
    proc = ServiceProcess(uri, tmp_path, "svc", **env).start()
    client = AsyncMongoClient(uri)
    rows = 50_000
    try:
        job = await api.start_import(proc, make_csv(rows), batch_size=200)
        await api.wait(proc, job["id"], lambda j: j["progress"].get("processed", 0) >= 2_000)
        database.stop(abruptly=True)  # stopped gracefully, it served the whole job first
        await wait_log(
            proc, f"job {job['id']} failed: for more than 3 s (DB_RETRY_SECONDS) the database could not be reached", timeout=60
        )
        database.start()
        failed = await api.wait(proc, job["id"], lambda j: j["state"] == "failed", "failed", timeout=120)
        assert "DB_RETRY_SECONDS" in failed["error"] and failed["retryable"] is True
        db = client.get_default_database()
        assert await db["uploads.files"].count_documents({"_id": ObjectId(job["params"]["file_id"])}) == 1, "upload kept"
        assert failed["progress"]["processed"] < rows

        # The retry runs on a replica with the usual deadlines: with 2 s, a
        # busy machine (CI) can time a healthy database out and fail it again.
        proc.stop()
        proc = ServiceProcess(uri, tmp_path, "svc2", **FAST).start()
        retried = await api.control(proc, job["id"], "retry")
        assert retried["state"] in ("queued", "running") and retried["error"] is None
        done = await api.wait(proc, job["id"], lambda j: j["state"] in ("completed", "failed"), "completion", timeout=300)
        assert done["state"] == "completed", done
        await assert_each_row_once(db["records"], job["id"], rows)
        assert done["progress"]["inserted"] == rows
    finally:
        proc.stop()
        await client.close()
        database.close()


async def test_a_rollback_that_always_fails_backs_off_and_frees_the_orgs_slot_after_the_give_up_time(spawn, api):
    proc = spawn("svc", COLLECT_JOBS_FAULTS="import.rollback", ROLLBACK_GIVE_UP_SECONDS="3", **FAST)
    stuck = await api.start_import(proc, make_csv(20_000), batch_size=100)
    await api.wait(proc, stuck["id"], lambda j: j["progress"].get("processed", 0) > 0)
    waiting = await api.start_import(proc, make_csv(500))
    await api.control(proc, stuck["id"], "terminate")

    started = time.monotonic()
    await asyncio.sleep(10)
    job = await api.job(proc, stuck["id"])
    assert job["state"] == "terminating"
    rollback = job["rollback"]
    assert "injected fault" in rollback["error"]
    # Backoff 1, 2, 4, 8 s: about four attempts in ten seconds, not hundreds.
    assert 2 <= rollback["attempts"] <= 6, rollback
    assert rollback["slot_released"] is True
    later = await api.wait(proc, waiting["id"], lambda j: j["state"] == "completed", "the queued import", timeout=120)
    assert later["started_at"] >= rollback["failing_since"], "it started only after the give-up time"
    assert (await api.job(proc, stuck["id"]))["state"] == "terminating", "the rollback keeps trying"
    assert time.monotonic() - started >= 3
    async with api.http.get(f"{proc.url}/metrics") as resp:
        text = await resp.text()
    assert 'collect_jobs_rollback_failures_total{kind="import"}' in text


@pytest.mark.timeout(900)
async def test_two_replicas_never_run_two_imports_of_an_org_limited_to_one(spawn, api, store):
    a = spawn("a", MAX_IMPORTS_PER_ORG="1", **FAST)
    b = spawn("b", MAX_IMPORTS_PER_ORG="1", **FAST)
    jobs = []
    for i in range(10):  # ten admissions raced across two replicas
        jobs.append(await api.start_import(a if i % 2 else b, make_csv(1_500, start=i * 10_000), batch_size=300))
    holding = {"$in": ["running", "pausing", "paused", "terminating"]}
    most = 0
    deadline = time.monotonic() + 600
    while True:
        most = max(most, await store["jobs"].count_documents({"kind": "import", "state": holding}))
        assert most <= 1, "two imports of the org held slots at once"
        states = [d["state"] async for d in store["jobs"].find({"kind": "import"}, {"state": 1})]
        if all(s == "completed" for s in states):
            break
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.1)
    for job in jobs:
        await assert_each_row_once(store["records"], job["id"], 1_500)
