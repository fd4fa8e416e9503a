"""A background export whose owner dies mid-way is adopted and continues from
its last durable checkpoint: the rows already in its result stay, and the
file is byte for byte the file of an uninterrupted export. Two apps on one
database stand for two replicas; the first is frozen (its leases lapse) while
it is held inside a write of its file, as a process that stalls there."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from service.jobs import fence
from service.jobs.kinds import exports
from service.store import files
from service.typedefs import MANAGER_KEY

from ..support.helpers import get_job, make_csv, start_import, wait_for_state
from .conftest import Replica

# Short leases, so that a frozen replica loses its job in about 3 s.
FAST = {"job_lease_seconds": 3.0, "job_poll_seconds": 0.1}
ROWS = 20_000  # about 850 KB of CSV: three whole chunks and a partial one


async def export_of(client, **spec: Any) -> bytes:
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people", **spec})
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    await wait_for_state(client, job["id"], "completed", timeout=120)
    return await (await client.get(f"/api/v1/jobs/{job['id']}/result")).read()


async def test_an_export_whose_owner_died_is_adopted_from_its_checkpoint_and_its_file_is_identical(
    make_client, db, monkeypatch: pytest.MonkeyPatch
):
    # Durable positions often, so that a short export has several.
    monkeypatch.setattr(exports, "DURABLE_SECONDS", 0.3)
    monkeypatch.setattr(exports, "DURABLE_SHARE", 1.0)
    a = await make_client(**FAST)
    imported = await start_import(a, make_csv(ROWS, columns=5), dataset="people")
    await wait_for_state(a, imported["id"], "completed", timeout=120)
    reference = await export_of(a, batch_size=200)

    first = Replica(a.app[MANAGER_KEY])
    rendered: Counter[str] = Counter()  # rows each replica read and rendered
    replicas: dict[str, Replica] = {"a": first}
    held, release = asyncio.Event(), asyncio.Event()
    real_add, real_write = exports.CsvRenderer.add, fence.FencedWriter.write

    def owner() -> str:
        return next((name for name, r in replicas.items() if r.owns_task(asyncio.current_task())), "?")

    def add(self: exports.CsvRenderer, docs: list[dict[str, Any]]) -> int:
        rendered[owner()] += len(docs)
        return real_add(self, docs)

    async def write(self: fence.FencedWriter, data: bytes) -> None:
        # A stalls inside a write of its file once past its second chunk.
        if owner() == "a" and self.written > 2 * files.CHUNK_BYTES and not held.is_set():
            held.set()
            await release.wait()
        await real_write(self, data)

    monkeypatch.setattr(exports.CsvRenderer, "add", add)
    monkeypatch.setattr(fence.FencedWriter, "write", write)
    resp = await a.post("/api/v1/jobs/export", json={"dataset": "people", "batch_size": 200})
    job = await resp.json()
    await asyncio.wait_for(held.wait(), 120)
    first.freeze()
    stalled = await get_job(a, job["id"])

    b = await make_client(**FAST)
    replicas["b"] = Replica(b.app[MANAGER_KEY])
    done = await wait_for_state(b, job["id"], "completed", timeout=120)
    first.thaw()
    release.set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while first.runs(job["id"]):  # A wakes, finds the job gone and writes nothing
        assert loop.time() < deadline
        await asyncio.sleep(0.02)

    body = await (await b.get(f"/api/v1/jobs/{job['id']}/result")).read()
    assert body == reference
    assert done["progress"]["processed"] == ROWS and done["progress"]["bytes"] == len(reference)
    # B went on from A's checkpoint: it read only what A had not made durable.
    assert stalled["progress"]["processed"] > 0
    assert 0 < rendered["b"] < ROWS, rendered
    # Only the result is left: A's attempt went with the completion.
    assert await db.db["exports.files"].count_documents({}) == 2  # the reference's and this one's
    ids = await db.db["exports.chunks"].distinct("files_id")
    assert f"{job['id']}:{done['epoch']:08d}" in ids and not [
        i for i in ids if str(i).startswith(job["id"]) and i != f"{job['id']}:{done['epoch']:08d}"
    ]
