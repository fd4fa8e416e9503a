"""Bugs the chaos run (bench/chaos.py) found, each with a test of its own."""

from __future__ import annotations

import asyncio
import contextvars
import csv
import io

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import AutoReconnect, BulkWriteError, ExecutionTimeout, NetworkTimeout, OperationFailure

from service.errors import InvalidTransition, JobFailed
from service.jobs.fence import Units
from service.jobs.model import new_job_id
from service.jobs.repo import JobRepo
from service.jobs.runner import JobContext, Kind

from ..support.helpers import make_csv, start_import, wait_for_state
from .conftest import create_job, wait_job


async def nothing(ctx: JobContext) -> None:
    return None


async def start_one(replicas, name: str, run, rollback=nothing, params: dict | None = None):
    """One replica running a kind of the test's own, and one job of it."""
    replica = await replicas({name: Kind(name=name, run=run, rollback=rollback, cleanup=nothing)})
    return replica, await create_job(replica, name, params or {})


async def pause_here(ctx: JobContext, position: dict) -> None:
    """The job asks for its own pause, then checkpoints: it shows paused there."""
    await ctx._runner.manager.control("org-a", ctx.job_id, "pause")
    await ctx.checkpoint(position)


def break_first_save_with_errors(monkeypatch, landed: bool) -> list[int]:
    """The first save of progress that carries row errors loses its answer
    (after landing, or not); returns a list that counts how many broke."""
    real = JobRepo.save_progress
    broken: list[int] = []

    async def save_progress(self, job_id, epoch, progress, checkpoint, new_errors):
        if new_errors and not broken:
            broken.append(1)
            if landed:
                await real(self, job_id, epoch, progress, checkpoint, new_errors)
            raise AutoReconnect("connection closed")
        return await real(self, job_id, epoch, progress, checkpoint, new_errors)

    monkeypatch.setattr(JobRepo, "save_progress", save_progress)
    return broken


async def test_a_failed_streamed_export_cannot_be_retried_since_its_client_is_gone(db, replicas):
    """Chaos seed 21: a streamed export failed when the database went away;
    its retry was accepted and the replica that claimed it crashed on every
    attempt (a stream has no file to write and nobody to stream to)."""

    async def run(ctx: JobContext) -> None:
        raise JobFailed("the database became unreachable during the download")

    replica = await replicas({"stream": Kind(name="stream", run=run, rollback=nothing, cleanup=nothing)})
    job_id = new_job_id()
    job = {"_id": job_id, "org_id": "org-a", "kind": "stream", "created_by": "test", "params": {"stream": True}}
    await replica.manager.start_attached(job, {"processed": 0}, sink=object())
    failed = await wait_job(db, job_id, lambda j: j["state"] == "failed", "the stream to fail")
    assert failed["retryable"] is False
    with pytest.raises(InvalidTransition):
        await replica.manager.control("org-a", job_id, "retry")


async def test_an_export_whose_cursor_the_server_dropped_reads_on_and_writes_each_row_once(
    client, db, monkeypatch: pytest.MonkeyPatch
):
    """Chaos seed 21 (60 s): on a loaded server an export's cursor was dropped
    (CursorNotFound) and the job failed as an internal error. The export now
    reads on after the last row it wrote."""
    rows = 2_000
    imported = await start_import(client, make_csv(rows), dataset="people")
    await wait_for_state(client, imported["id"], "completed")
    real = AsyncCursor.to_list
    calls = 0

    async def to_list(self: AsyncCursor, length: int | None = None) -> list:
        nonlocal calls
        if self.collection.name == "records":
            calls += 1
            if calls == 3:  # the server dropped the cursor between two replies
                raise OperationFailure("cursor id 1 not found", 43)
        return await real(self, length)

    monkeypatch.setattr(AsyncCursor, "to_list", to_list)
    resp = await client.post("/api/v1/jobs/export", json={"dataset": "people", "batch_size": 150})
    job = await resp.json()
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert done["state"] == "completed", done["error"]
    body = await (await client.get(f"/api/v1/jobs/{job['id']}/result")).read()
    ids = [line[0] for line in csv.reader(io.StringIO(body.decode()))][1:]
    assert ids == [str(i) for i in range(1, rows + 1)]
    assert calls > 3


@pytest.mark.parametrize("action", ["pause", "terminate"])
async def test_a_write_that_timed_out_is_settled_before_the_job_shows_paused_or_rolls_back(db, replicas, action):
    """Chaos seed 3 (a CI run on a loaded machine): an import's first unit timed
    out on the client while FerretDB (which does not stop an insert at its
    maxTimeMS) went on to apply it; a pause was known, so the batch was cut
    there and the job showed `paused` with no row, and the rows landed after.
    A write whose fate is unknown (it timed out, or its connection broke) is
    now sent again until it has landed before the job may show paused, or
    before its rollback deletes: the late one then adds nothing (the same
    _ids). The server here applies the late write before a later one, as a
    database does with writes to the same documents."""
    ids = [f"late-{i}" for i in range(10)]
    late: list[asyncio.Task] = []
    store = db.db["late_writes"]

    async def insert(chunk) -> None:
        try:
            await store.insert_many([{"_id": i} for i in chunk], ordered=False)
        except BulkWriteError:
            pass  # already there: a replay

    async def applied_later(chunk) -> None:
        await asyncio.sleep(1.0)  # the server gets to it after the client gave up
        await insert(chunk)

    async def run(ctx: JobContext) -> None:
        async def op(chunk) -> None:
            if not late:
                await replica.manager.control("org-a", ctx.job_id, action)
                # The server's own work, outside this write's deadline.
                late.append(asyncio.create_task(applied_later(list(chunk)), context=contextvars.Context()))
                raise NetworkTimeout("timed out")
            await asyncio.gather(*late)  # behind the earlier write
            await insert(chunk)

        await ctx.fence.in_units(Units(10, 10), ids, op, stop=ctx.stop_known)
        await ctx.checkpoint()

    async def rollback(ctx: JobContext) -> None:
        await ctx.fence.send(lambda: store.delete_many({}))

    replica, job_id = await start_one(replicas, "late", run, rollback)
    final = "paused" if action == "pause" else "terminated"
    await wait_job(db, job_id, lambda j: j["state"] == final, f"the job to show {final}")
    shown = await store.count_documents({})
    await asyncio.gather(*late)
    assert await store.count_documents({}) == shown, f"rows landed after the job showed {final}"
    assert shown == (len(ids) if action == "pause" else 0)


async def test_a_write_left_in_doubt_is_settled_before_the_step_runs_again_not_replayed_over_later_writes(db, replicas):
    """Review of the fix above: an export attempt's file reset (a delete of its
    chunks) applied but its answer was lost (AutoReconnect); the step ran
    again and wrote and synced the file; at the pause, the reset still listed
    as unsettled was sent again and deleted every chunk written since. What
    a run leaves in doubt is now settled before the next run writes."""
    runs = 0
    seen: dict[str, object] = {}

    async def run(ctx: JobContext) -> None:
        nonlocal runs
        runs += 1
        grid = ctx.results.writer("f.csv")
        if runs == 1:
            real = grid._writer.reset

            async def reset_then_break() -> None:
                await real()
                if not seen.get("broke"):
                    seen["broke"] = True
                    raise AutoReconnect("connection closed")  # applied; the answer was lost

            grid._writer.reset = reset_then_break  # type: ignore[method-assign]
        await grid.reset()
        size = ctx._db.exports.chunk_size
        await grid.write(b"x" * (3 * size + 10))
        stored = await grid.sync()
        seen["file_id"] = ctx.results.file_id
        seen["before"] = await ctx._db.exports.chunks.count_documents({"files_id": ctx.results.file_id})
        await pause_here(ctx, {"file_id": ctx.results.file_id, "bytes": stored})

    replica, job_id = await start_one(replicas, "exp", run)
    await wait_job(db, job_id, lambda j: j["state"] == "paused", "the job to show paused")
    after = await db.exports.chunks.count_documents({"files_id": seen["file_id"]})
    assert runs == 2 and after == seen["before"] == 4, "a replayed reset deleted the file written after it"
    await replica.manager.control("org-a", job_id, "terminate")
    await wait_job(db, job_id, lambda j: j["state"] == "terminated", "the job to end")


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "lost"])
async def test_a_checkpoint_whose_answer_was_lost_keeps_its_batchs_row_errors_once(client, db, monkeypatch, landed):
    """Chaos run with overlapping faults (seed 7, four lanes): a teams job's
    checkpoint lost its connection; the step ran again from the position it had
    tried to save, and the row errors of that batch were never written: the job
    completed with five rows neither created nor reported. Whether the lost
    write landed or not, every bad row is reported once and `failed` counts
    exactly the rows reported."""
    broken = break_first_save_with_errors(monkeypatch, landed)
    lines = ["id,name,day"] + [f"{'x' if i % 7 == 0 else i},name {i},2017-01-01" for i in range(1, 101)]
    job = await start_import(client, ("\n".join(lines) + "\n").encode(), types="id:int", batch_size=10, max_errors=1000)
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert broken == [1]
    assert done["state"] == "completed", done.get("error")
    reported = [e["line"] for e in done["errors"]]
    assert sorted(reported) == [i + 1 for i in range(7, 101, 7)], "each bad row reported, once"
    assert done["progress"]["failed"] == len(reported)


async def test_a_teams_update_that_ran_out_of_time_is_sent_again_by_itself_not_by_failing_the_step(db, replicas):
    """Review of Fence.settle: a teams job's single-user updates
    (Teams.concurrently) went out inside one fenced block, not as fenced
    sends, so they were the one write of a job outside Fence.send: one that
    ran out of its time on the server failed the whole step (run again from
    its checkpoint after a backoff) where any other write is sent again by
    itself, and one whose fate was unknown was not recorded for settle().
    Each update is now a fenced send like every other write."""
    store = db.db["slow_users"]
    await store.insert_one({"_id": "u1", "teams": []})
    runs = 0
    timed_out: list[bool] = []

    async def run(ctx: JobContext) -> None:
        nonlocal runs
        runs += 1

        async def change() -> None:
            if not timed_out:
                timed_out.append(True)
                raise ExecutionTimeout("operation exceeded time limit", 50)
            await store.update_one({"_id": "u1"}, {"$addToSet": {"teams": "t1"}})

        await ctx.teams.concurrently([change], 4)
        await ctx.checkpoint()

    _, job_id = await start_one(replicas, "slow", run)
    await wait_job(db, job_id, lambda j: j["state"] == "completed", "the job to complete")
    assert timed_out and runs == 1, "the timed-out update failed the step, which ran again"
    assert (await store.find_one({"_id": "u1"}))["teams"] == ["t1"]


async def test_an_export_files_store_that_ran_out_of_time_is_sent_again_by_itself(db, replicas, monkeypatch):
    """Review of Fence.settle: an export attempt's file writes (FencedWriter:
    its whole chunks, sync()'s short last chunk, the files document) went out
    inside fenced blocks, not as fenced sends: a store that ran out of its
    time on the server failed the step, which then re-read and re-rendered
    from the last durable position, and one whose fate was unknown was not
    recorded for settle(). Each store is now a fenced send that can be sent
    again with the same effect (a chunk leaves the writer's list only once
    stored; the short chunk is replaced whole)."""
    real = AsyncCollection.replace_one
    timed_out: list[bool] = []

    async def replace_one(self, *args, **kwargs):
        if self.name == "exports.chunks" and not timed_out:
            timed_out.append(True)
            raise ExecutionTimeout("operation exceeded time limit", 50)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "replace_one", replace_one)
    seen: dict[str, object] = {}
    runs = 0

    async def run(ctx: JobContext) -> None:
        nonlocal runs
        runs += 1
        grid = ctx.results.writer("f.csv")
        size = ctx._db.exports.chunk_size
        await grid.reset()
        await grid.write(b"a" * (3 * size + 10))
        await grid.sync()  # chunk 3 stored short (10 bytes): the store that runs out of time
        await grid.write(b"b" * size)
        stored = await grid.sync()  # chunk 3 whole, chunk 4 short
        seen["file_id"], seen["size"], seen["stored"] = ctx.results.file_id, size, stored
        await pause_here(ctx, {"file_id": ctx.results.file_id, "bytes": stored})

    replica, job_id = await start_one(replicas, "exp", run)
    await wait_job(db, job_id, lambda j: j["state"] == "paused", "the job to show paused")
    assert timed_out and runs == 1, "the store that ran out of time failed the step, which ran again"
    chunks = await db.exports.chunks.find({"files_id": seen["file_id"]}, sort=[("n", 1)]).to_list(None)
    assert [len(c["data"]) for c in chunks] == [seen["size"]] * 4 + [10]
    assert seen["stored"] == 4 * seen["size"] + 10
    await replica.manager.control("org-a", job_id, "terminate")
    await wait_job(db, job_id, lambda j: j["state"] == "terminated", "the job to end")


async def test_on_error_fail_still_fails_when_the_failing_batchs_save_loses_its_answer(client, db, monkeypatch):
    """Review: fail_on_row_errors saves the batch, then fails the job; when that
    save lost its answer, the step ran again from the position it had tried
    to save, past the bad row, and the job completed: on_error=fail forgotten,
    the rows after the bad one in that batch neither written nor reported.
    The failure is now kept and raised before the step runs again."""
    broken = break_first_save_with_errors(monkeypatch, landed=True)
    lines = ["id,name,day"] + [f"{'x' if i == 15 else i},name {i},2017-01-01" for i in range(1, 101)]
    job = await start_import(client, ("\n".join(lines) + "\n").encode(), types="id:int", batch_size=10, on_error="fail")
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert broken == [1]
    assert done["state"] == "failed" and "line 16" in done["error"], done
    assert await db.records.count_documents({"job_id": job["id"]}) == 14, "rows before the bad one, none after"
    assert [e["line"] for e in done["errors"]] == [16]
