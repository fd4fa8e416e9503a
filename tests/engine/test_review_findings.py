"""The scenarios an outside review found (issue 21, findings 1 to 4), each
through the real app on the real database, with two apps standing in for two
replicas. They use nothing but the HTTP API, the managers' own loop (frozen
to stand for a stalled process) and a hold inside a database call, so they
ran unchanged against the code before the engine change, where each failed."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from service.jobs.params import ImportParams
from service.store import files
from service.typedefs import MANAGER_KEY

from ..support.helpers import (
    control,
    make_csv,
    post_teams,
    sheet,
    start_import,
    team_rows,
    wait_for,
    wait_for_state,
    wait_until_processed,
)
from .conftest import Replica

# Short leases, so that a frozen replica loses its job in about 3 s.
FAST = {"job_lease_seconds": 3.0, "job_poll_seconds": 0.1}


class HeldCall:
    """Holds the first call of one replica's runners at a chosen point."""

    def __init__(self) -> None:
        self.replica: Replica | None = None
        self.entered = asyncio.Event()
        self.released = asyncio.Event()

    async def point(self) -> None:
        if self.replica is not None and self.replica.owns_task(asyncio.current_task()):
            self.replica = None
            self.entered.set()
            await self.released.wait()


async def gone_from(replica: Replica, job_id: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while replica.runs(job_id):
        assert loop.time() < deadline, "the stalled runner never gave the job up"
        await asyncio.sleep(0.02)


async def test_a_stalled_export_owner_that_wakes_after_adoption_leaves_the_adopters_file_whole(
    make_client, db, monkeypatch: pytest.MonkeyPatch
):
    """Finding 1: replica A stalls while writing the export's file, B adopts
    the job and completes it, A wakes: before, A's abort deleted the file B
    had written (the result answered 410, or a Content-Length then a
    CorruptGridFile)."""
    held = HeldCall()
    real_insert = files.ChunkWriter._insert

    async def insert(self: files.ChunkWriter, most: int | None = None) -> None:
        await held.point()
        await real_insert(self, most)

    monkeypatch.setattr(files.ChunkWriter, "_insert", insert)
    a = await make_client(**FAST)
    rows = 3_000
    imported = await start_import(a, make_csv(rows), dataset="people")
    await wait_for_state(a, imported["id"], "completed")
    first = Replica(a.app[MANAGER_KEY])
    held.replica = first
    resp = await a.post("/api/v1/jobs/export", json={"dataset": "people", "batch_size": 100})
    assert resp.status == 202
    job = await resp.json()
    await asyncio.wait_for(held.entered.wait(), 60)  # A is about to write the file's chunks
    first.freeze()

    b = await make_client(**FAST)
    done = await wait_for_state(b, job["id"], "completed", timeout=60)
    assert done["epoch"] >= 2

    first.thaw()
    held.released.set()
    await gone_from(first, job["id"])
    resp = await b.get(f"/api/v1/jobs/{job['id']}/result")
    assert resp.status == 200, await resp.text()
    body = await resp.read()
    assert len(body) == int(resp.headers["Content-Length"])
    lines = list(csv.reader(io.StringIO(body.decode())))
    assert len(lines) == rows + 1 and lines[1][0] == "1" and lines[-1][0] == str(rows)


async def test_a_late_teams_rollback_write_cannot_delete_the_next_jobs_teams(make_client, db, monkeypatch: pytest.MonkeyPatch):
    """Finding 2: J is terminated; its rollback owner A stalls inside the delete
    of J's teams; B finishes the rollback; the corrected sheet K creates the
    same teams; A wakes. Before, A's delete (by team _id only) removed K's teams."""
    held = HeldCall()
    real_delete = AsyncCollection.delete_many

    async def delete_many(self: AsyncCollection, *args: Any, **kwargs: Any) -> Any:
        if self.name == "teams":
            await held.point()
        return await real_delete(self, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "delete_many", delete_many)
    a = await make_client(**FAST)
    rows = team_rows(40)
    j = await post_teams(a, sheet(rows), batch_size=5)
    await wait_until_processed(a, j["id"], at_least=20)
    first = Replica(a.app[MANAGER_KEY])
    held.replica = first
    await control(a, j["id"], "terminate")
    await asyncio.wait_for(held.entered.wait(), 60)  # A is inside the delete of J's teams
    first.freeze()

    b = await make_client(**FAST)
    await wait_for_state(b, j["id"], "terminated", timeout=60)
    k = await post_teams(b, sheet(rows), batch_size=20)
    done = await wait_for_state(b, k["id"], "completed", timeout=120)
    assert done["progress"]["teams_created"] == 40

    first.thaw()
    held.released.set()
    await gone_from(first, j["id"])
    assert await db.teams.count_documents({"job_id": k["id"]}) == 40, "K's teams must all survive J's late delete"
    users = await db.users.find({}).to_list(None)
    assert all(len(u.get("teams") or []) >= 1 for u in users), "and every member keeps K's team"


async def test_rollbacks_backing_off_cannot_hide_a_newer_job_that_needs_a_runner(client, db):
    """Finding 3: the unowned sweep took the 100 oldest jobs without an owner
    and then filtered them by lease, so 100 rollbacks in backoff hid every
    newer job that needed a runner."""
    repo = client.app[MANAGER_KEY].repo
    later = repo.clock.after(3600)
    for _ in range(101):
        job_id = await insert_import_job(repo)
        await repo.request("default", job_id, terminate_action())
        await repo.release(job_id, 0, not_before=later)  # a rollback backing off for an hour
    newest = await insert_import_job(repo)
    await control(client, newest, "terminate")  # queued, so it wrote nothing: it ends at once
    await wait_for_state(client, newest, "terminated", timeout=60)


async def insert_import_job(repo: Any) -> str:
    job_id = str(ObjectId())
    params = ImportParams(
        filename="people.csv",
        file_id=str(ObjectId()),
        data_start={"offset": 0, "line": 1, "row": 0},
        batch_size=100,
        dataset="people",
        columns=["a"],
    ).to_doc()
    await repo.create({"_id": job_id, "org_id": "default", "kind": "import", "created_by": "test", "params": params}, {})
    return job_id


def terminate_action() -> Any:
    from service.jobs import model

    return model.TERMINATE


async def test_a_failed_teams_jobs_rollback_waits_while_the_orgs_next_teams_job_holds_the_slot(client, db):
    """Finding 4: a failed job held no slot, so the org's next teams job K
    started; terminating the failed J then ran J's rollback beside K (J could
    delete a user between K's read and its update). Now J's rollback waits
    for K to let go of the slot, and then leaves no trace."""
    rows = team_rows(30)
    rows[25][2] = "not a phone"
    j = await post_teams(client, sheet(rows), on_error="fail", batch_size=5)
    await wait_for_state(client, j["id"], "failed")
    k = await post_teams(
        client, sheet([[f"Other {i}", f"M {i}", r[2], r[3]] for i, r in enumerate(team_rows(300))]), batch_size=5
    )
    await wait_until_processed(client, k["id"], at_least=20)
    await control(client, k["id"], "pause")
    await wait_for_state(client, k["id"], "paused")

    manager = client.app[MANAGER_KEY]
    ticks = 0
    real_tick = manager._tick

    async def counted() -> None:
        nonlocal ticks
        await real_tick()
        ticks += 1

    manager._tick = counted
    await control(client, j["id"], "terminate")
    # Over many ticks of the manager's loop, J's rollback does not start.
    watched = await wait_for(client, j["id"], lambda job: ticks >= 20 or job["state"] != "terminating", timeout=60)
    assert watched["state"] == "terminating" and "teams_deleted" not in watched["progress"]

    await control(client, k["id"], "terminate")
    await wait_for_state(client, k["id"], "terminated", timeout=120)
    await wait_for_state(client, j["id"], "terminated", timeout=120)
    assert await db.teams.count_documents({}) == 0 and await db.users.count_documents({}) == 0
