"""For every kind of write the engine lets job code make, forward and undo: a
replica whose runner stalls inside the write (after the write's deadline was
set), and whose manager stalls too, so that its lease lapses and another
replica adopts and finishes the job, sends nothing when it wakes. The kind
here is the tests' own: its first attempt makes exactly the write under test,
and the adopting attempt does nothing, so any document that write would touch
shows whether it landed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import bson
import pytest
from bson import ObjectId

from service.jobs.fence import Units, attempt_file_id
from service.jobs.params import DatasetParams, UploadParams
from service.jobs.runner import JobContext, Kind
from service.store.db import Database
from service.store.files import CHUNK_BYTES
from service.store.records import record_id
from service.store.teams import undo_id
from service.store.writes import Encoded

from .conftest import Hold, create_job, wait_job

ORG, DATASET = "org-a", "ds"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Case:
    """``seed`` prepares what the write would change; ``write`` is the job's
    one write; ``landed`` tells from the database whether it did anything."""

    phase: str  # "run" or "rollback"
    seed: Callable[[Database, str], Awaitable[None]]
    write: Callable[[JobContext], Awaitable[Any]]
    landed: Callable[[Database, str], Awaitable[bool]]


async def nothing(db: Database, job_id: str) -> None:
    return None


def user(job: str, **fields: Any) -> dict[str, Any]:
    return {"_id": f"{ORG}/+15550001", "org_id": ORG, "phone": "+15550001", "jobs": [job], **fields}


async def seed_user(db: Database, job: str, **fields: Any) -> None:
    await db.users.insert_one(user(job, **fields))


async def the_user(db: Database) -> dict[str, Any] | None:
    return await db.users.find_one({"_id": f"{ORG}/+15550001"})


async def seed_record(db: Database, job_id: str) -> None:
    await db.records.insert_one(
        {"_id": record_id(ORG, DATASET, job_id, 1), "org_id": ORG, "dataset": DATASET, "job_id": job_id, "row": 1}
    )


async def record_gone(db: Database, job_id: str) -> bool:
    return await db.records.count_documents({"job_id": job_id}) == 0


def encoded_record(job_id: str) -> Encoded:
    doc = {"_id": record_id(ORG, DATASET, job_id, 7), "org_id": ORG, "dataset": DATASET, "job_id": job_id, "row": 7, "data": {}}
    return Encoded(bson.encode(doc))


async def seed_upload(db: Database, job_id: str) -> None:
    job = await db.jobs.find_one({"_id": job_id})
    writer = db.uploads.writer(ObjectId(job["params"]["file_id"]), "in.csv", {"org_id": ORG, "job_id": job_id})
    await writer.write(b"a,b\n1,2\n")
    await writer.close()


async def upload_gone(db: Database, job_id: str) -> bool:
    job = await db.jobs.find_one({"_id": job_id})
    return await db.uploads.file(ObjectId(job["params"]["file_id"])) is None


async def seed_team(db: Database, job_id: str) -> None:
    await db.teams.insert_one({"_id": f"{ORG}/sales", "org_id": ORG, "name": "Sales", "job_id": job_id})


async def seed_undo(db: Database, job_id: str) -> None:
    await db.undo.insert_one({"_id": undo_id(job_id, "u"), "job_id": job_id, "org_id": ORG, "user_id": "u", "name_set": None})


async def write_result(ctx: JobContext) -> None:
    writer = ctx.results.writer("out.csv")
    await writer.write(b"x" * 10)
    await writer.close()


async def sync_result(ctx: JobContext) -> None:
    writer = ctx.results.writer("out.csv")
    await writer.write(b"x" * 10)
    await writer.sync()


async def seed_earlier_attempt(db: Database, job_id: str) -> None:
    await db.exports.chunks.insert_one({"files_id": attempt_file_id(job_id, 9), "n": 0, "data": b"x" * CHUNK_BYTES})


async def resume_result(ctx: JobContext) -> None:
    """Copies the earlier attempt's whole chunk into this attempt's file."""
    assert await ctx.results.writer("out.csv").resume(attempt_file_id(ctx.job_id, 9), CHUNK_BYTES)


async def seed_own_chunk(db: Database, job_id: str) -> None:
    await db.exports.chunks.insert_one({"files_id": attempt_file_id(job_id, 1), "n": 0, "data": b"x" * 10})


async def insert_one_record(ctx: JobContext) -> None:
    await ctx.records.insert(Units(10, 10), [encoded_record(ctx.job_id)], lambda: False, lambda n, errors: None)


async def delete_first_row(ctx: JobContext) -> None:
    await ctx.records.delete_rows(Units(10, 10), range(1, 2), lambda: False, lambda n, deleted: None)


CASES: dict[str, Case] = {
    "records.insert": Case("run", nothing, insert_one_record, lambda db, j: _exists(db.records, record_id(ORG, DATASET, j, 7))),
    "records.delete_rows": Case("rollback", seed_record, delete_first_row, record_gone),
    "records.delete_all": Case("rollback", seed_record, lambda ctx: ctx.records.delete_all(), record_gone),
    "upload.delete": Case("rollback", seed_upload, lambda ctx: ctx.upload.delete(), upload_gone),
    "results.write": Case(
        "run", nothing, write_result, lambda db, j: _exists(db.exports.chunks, attempt_file_id(j, 1), "files_id")
    ),
    "results.sync": Case(
        "run", nothing, sync_result, lambda db, j: _exists(db.exports.chunks, attempt_file_id(j, 1), "files_id")
    ),
    "results.resume": Case(
        "run", seed_earlier_attempt, resume_result, lambda db, j: _exists(db.exports.chunks, attempt_file_id(j, 1), "files_id")
    ),
    "results.reset": Case(
        "run",
        seed_own_chunk,
        lambda ctx: ctx.results.writer("out.csv").reset(),
        lambda db, j: _missing_chunks(db.exports.chunks, attempt_file_id(j, 1)),
    ),
    "results.delete_all": Case(
        "rollback",
        lambda db, j: db.exports.files.insert_one({"_id": attempt_file_id(j, 9), "length": 0}),
        lambda ctx: ctx.results.delete_all(),
        lambda db, j: _missing(db.exports.files, attempt_file_id(j, 9)),
    ),
    "teams.insert_teams": Case(
        "run",
        nothing,
        lambda ctx: ctx.teams.insert_teams([{"_id": f"{ORG}/sales", "org_id": ORG, "job_id": ctx.job_id}]),
        lambda db, j: _exists(db.teams, f"{ORG}/sales"),
    ),
    "teams.insert_users": Case(
        "run",
        nothing,
        lambda ctx: ctx.teams.insert_users([{"_id": f"{ORG}/+15550001", "org_id": ORG, "job_id": ctx.job_id}]),
        lambda db, j: _exists(db.users, f"{ORG}/+15550001"),
    ),
    "teams.insert_undo": Case(
        "run",
        nothing,
        lambda ctx: ctx.teams.insert_undo([{"_id": undo_id(ctx.job_id, "u"), "job_id": ctx.job_id}]),
        lambda db, j: _exists(db.undo, undo_id(j, "u")),
    ),
    "teams.change_user": Case(
        "run",
        lambda db, j: db.users.insert_one({"_id": f"{ORG}/+15550001", "org_id": ORG, "teams": []}),
        lambda ctx: ctx.teams.concurrently(
            [ctx.teams.change_user(f"{ORG}/+15550001", {"$addToSet": {"teams": {"$each": ["t"]}}})], 1
        ),
        lambda db, j: _user_has(db, "teams", ["t"]),
    ),
    "teams.note_name": Case(
        "run",
        seed_undo,
        lambda ctx: ctx.teams.concurrently([ctx.teams.note_name("u", "Ann")], 1),
        lambda db, j: _field(db.undo, undo_id(j, "u"), "name_set", "Ann"),
    ),
    "teams.pull_teams": Case(
        "rollback",
        lambda db, j: seed_user(db, j, teams=["t"]),
        lambda ctx: ctx.teams.pull_teams(f"{ORG}/+15550001", ["t"]),
        lambda db, j: _user_has(db, "teams", []),
    ),
    "teams.restore_name": Case(
        "rollback",
        lambda db, j: seed_user(db, j, name="Set"),
        lambda ctx: ctx.teams.restore_name(f"{ORG}/+15550001", "Set", {"$set": {"name": "Before"}}),
        lambda db, j: _user_has(db, "name", "Before"),
    ),
    "teams.drop_empty_teams": Case(
        "rollback",
        lambda db, j: seed_user(db, j, teams=[]),
        lambda ctx: ctx.teams.drop_empty_teams(f"{ORG}/+15550001"),
        lambda db, j: _user_lacks(db, "teams"),
    ),
    "teams.unmark": Case(
        "rollback",
        lambda db, j: seed_user(db, j),
        lambda ctx: ctx.teams.unmark(f"{ORG}/+15550001"),
        lambda db, j: _user_lacks(db, "jobs"),
    ),
    "teams.orphan_user": Case(
        "rollback",
        lambda db, j: seed_user(db, j, job_id=j),
        lambda ctx: ctx.teams.orphan_user(f"{ORG}/+15550001"),
        lambda db, j: _user_has(db, "orphaned", True),
    ),
    "teams.delete_user": Case(
        "rollback",
        lambda db, j: db.users.insert_one({"_id": f"{ORG}/+15550001", "org_id": ORG, "teams": [], "name": None, "job_id": j}),
        lambda ctx: ctx.teams.delete_user(f"{ORG}/+15550001", None, ctx.job_id),
        lambda db, j: _missing(db.users, f"{ORG}/+15550001"),
    ),
    "teams.delete_teams": Case(
        "rollback",
        seed_team,
        lambda ctx: ctx.teams.delete_teams([f"{ORG}/sales"]),
        lambda db, j: _missing(db.teams, f"{ORG}/sales"),
    ),
    "teams.delete_undo": Case(
        "rollback",
        seed_undo,
        lambda ctx: ctx.teams.delete_undo([undo_id(ctx.job_id, "u")]),
        lambda db, j: _missing(db.undo, undo_id(j, "u")),
    ),
    "profiles.record": Case(
        "run",
        nothing,
        lambda ctx: ctx.profiles.record({"job_id": ctx.job_id, "columns": ["a"]}),
        lambda db, j: _exists(db.profiles, f"{ORG}/{DATASET}"),
    ),
    "profiles.forget": Case(
        "rollback",
        lambda db, j: db.profiles.insert_one(
            {"_id": f"{ORG}/{DATASET}", "org_id": ORG, "version": 1, "imports": [{"job_id": j, "columns": ["a"]}]}
        ),
        lambda ctx: ctx.profiles.forget(),
        lambda db, j: _field(db.profiles, f"{ORG}/{DATASET}", "imports", []),
    ),
}


async def _exists(collection: Any, _id: Any, field: str = "_id") -> bool:
    return await collection.count_documents({field: _id}) > 0


async def _missing_chunks(chunks: Any, file_id: str) -> bool:
    return await chunks.count_documents({"files_id": file_id}) == 0


async def _missing(collection: Any, _id: Any) -> bool:
    return await collection.count_documents({"_id": _id}) == 0


async def _field(collection: Any, _id: Any, field: str, value: Any) -> bool:
    doc = await collection.find_one({"_id": _id})
    return doc is not None and doc.get(field) == value


async def _user_has(db: Database, field: str, value: Any) -> bool:
    doc = await the_user(db)
    return doc is not None and doc.get(field) == value


async def _user_lacks(db: Database, field: str) -> bool:
    doc = await the_user(db)
    return doc is not None and field not in doc


@dataclass(frozen=True, kw_only=True)
class ProbeParams(DatasetParams, UploadParams):
    """The probe writes records and profiles (a dataset) and deletes an upload."""


def probe_kind(case: Case) -> Kind:
    """A kind whose first attempt makes the case's write and whose later
    attempts (the adopter's) do nothing."""

    attempts: list[int] = []

    async def first_attempt_only(ctx: JobContext, phase: str) -> None:
        if case.phase == phase and not attempts:
            attempts.append(ctx.job["epoch"])
            await case.write(ctx)

    async def run(ctx: JobContext) -> None:
        await first_attempt_only(ctx, "run")
        while case.phase == "rollback":  # runs until it is terminated, then rolls back
            await ctx.checkpoint()
            await asyncio.sleep(0.02)

    async def rollback(ctx: JobContext) -> None:
        await first_attempt_only(ctx, "rollback")

    async def cleanup(ctx: JobContext) -> None:
        return None

    return Kind(name="probe", run=run, rollback=rollback, cleanup=cleanup, params=ProbeParams)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_an_owner_stalled_inside_a_write_past_its_lease_sends_nothing_after_another_replica_finished_the_job(
    name, db, replicas, hold: Hold
):
    case = CASES[name]
    kinds = {"probe": probe_kind(case)}
    first = await replicas(kinds)
    hold.arm(first)
    params = ProbeParams(
        dataset=DATASET, filename="probe.csv", file_id=str(ObjectId()), data_start={"offset": 0, "line": 1, "row": 0}
    )
    job_id = await create_job(first, "probe", params.to_doc())
    await case.seed(db, job_id)
    assert not await case.landed(db, job_id), "the case's check must see the write as not landed yet"
    if case.phase == "rollback":
        await first.manager.control(ORG, job_id, "terminate")
    # The first replica's runner is inside the write, its deadline set.
    await asyncio.wait_for(hold.entered.wait(), 30)
    first.freeze()

    await replicas(kinds)  # adopts the job once the first replica's lease has lapsed, and finishes it
    final = "completed" if case.phase == "run" else "terminated"
    done = await wait_job(db, job_id, lambda j: j["state"] == final, f"the adopter to finish ({final})")
    assert done["epoch"] >= 2

    first.thaw()
    hold.release()
    await wait_job(db, job_id, lambda j: not first.runs(job_id), "the stalled runner to give the job up")
    assert not await case.landed(db, job_id), f"{name}: the stalled owner's write landed after the adoption"
    assert (await db.jobs.find_one({"_id": job_id}))["state"] == final
