"""CSV import: stream the stored upload, type each row, insert batches into
``records`` tagged with the job id; roll back by deleting by that tag."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from ...csvio.records import Position, Record
from ...csvio.rows import TOO_LARGE, RowTyper, row_error
from ...profiles import store as profiles
from ...profiles.guard import column_specs, guard
from ...profiles.profile import PROFILE_ROWS, TableProfile
from ...store.records import RecordEncoder, job_prefix, prefix_range, record_id
from ...store.writes import MAX_DOCUMENT_BYTES, Encoded, insert_encoded
from ..model import JobState, utcnow
from ..runner import JobContext, Kind
from ..workers import built_batches

# Rows per delete command: bounded for progress, and below SQLite's limit of
# 32,766 variables per statement, which FerretDB hits on larger deletes.
ROLLBACK_ROWS = 30_000


class RowBuilder:
    """Turns parsed records into documents or row errors, and profiles a bounded,
    evenly spread sample of the rows for the dataset's profile."""

    def __init__(self, ctx: JobContext) -> None:
        params = ctx.params
        self.columns: list[str] = params["columns"]
        nulls = params.get("null_values") or []
        self.typer = RowTyper(self.columns, column_specs(params), nulls, ctx.db.decimal128)
        self.tags = (ctx.org_id, params["dataset"], ctx.job_id)
        self.profile = TableProfile(self.columns, nulls)
        self.every = max(1, -(-(params.get("rows") or 0) // PROFILE_ROWS))

    def build(self, batch: list[Record]) -> tuple[list[Encoded], list[Record], list[dict[str, Any]]]:
        """Documents come out already encoded, so the encoding is done while the
        previous batch is being inserted rather than after it."""
        docs, sources, errors = [], [], []
        encode_record = RecordEncoder(*self.tags, utcnow()).encode
        convert, every, profile = self.typer.convert, self.every, self.profile
        columns, plain_width = self.typer.columns, self.typer.plain_width
        for record in batch:
            fields = record.fields
            if fields is not None and len(fields) == plain_width and record.error is None:
                data = dict(zip(columns, fields))  # convert()'s result, without the call (see plain_width)
            else:
                data, error = convert(record)
                if error is not None:
                    errors.append(error)
                    continue
            raw = encode_record(record.row, data)
            if len(raw) > MAX_DOCUMENT_BYTES:
                errors.append(row_error(record, TOO_LARGE, f"the row is {len(raw):,} bytes as a document, over MongoDB's 16 MiB"))
                continue
            if record.row % every == 0:  # rows stored, like the profile's other rows
                profile.add(fields)
            docs.append(Encoded(raw))
            sources.append(record)
        return docs, sources, errors


async def insert_idempotent(collection: AsyncCollection, docs: list[Encoded], sources: Sequence[Record]) -> list[dict[str, Any]]:
    """Inserts a batch (a replayed one is harmless: its _ids exist) and turns any
    document the database rejected into a row error, keeping the rest."""
    if not docs:
        return []
    return [
        {"line": sources[e["index"]].line, "row": sources[e["index"]].row, "message": f"rejected by the database: {e['errmsg']}"}
        for e in await insert_encoded(collection, docs)
    ]


@dataclass
class _Batch:
    processed: int
    position: dict[str, int]
    errors: list[dict[str, Any]]
    insert: asyncio.Task[list[dict[str, Any]]]


async def run(ctx: JobContext) -> None:
    """Keeps the database busy with one insert in flight: batch k+1 is
    parsed and encoded while batch k is inserted, and sent the moment batch k
    lands, while batch k's checkpoint is written. Batch k+1 is sent only when
    no pause or stop is known here, and a pause that batch k's checkpoint
    learns of (made on another replica) lets the batch in flight land before
    it waits, so a pause still stops the writes within one batch."""
    params = ctx.params
    start = Position(**(ctx.position or params["data_start"]))
    progress = ctx.progress
    for key in ("processed", "inserted", "failed"):
        progress.setdefault(key, 0)
    progress.setdefault("total", params.get("rows"))
    await guard(ctx)
    builder = RowBuilder(ctx)
    fail_fast = params["on_error"] == "fail"
    in_flight: _Batch | None = None

    async def insert(docs: list[Encoded], sources: Sequence[Record]) -> list[dict[str, Any]]:
        async with ctx.fenced():
            return await insert_idempotent(ctx.db.records, docs, sources)

    def send(
        docs: list[Encoded],
        sources: Sequence[Record],
        processed: int,
        position: dict[str, int],
        errors: list[dict[str, Any]],
    ) -> _Batch:
        return _Batch(processed, position, errors, asyncio.create_task(insert(docs, sources)))

    async def land(batch: _Batch) -> list[dict[str, Any]]:
        """Waits for the batch's insert, counts it and applies the row-error
        policy (which may fail the job); returns its row errors."""
        errors = batch.errors + await batch.insert
        errors.sort(key=lambda e: e["row"])
        progress["processed"] += batch.processed
        progress["failed"] += len(errors)
        progress["inserted"] += batch.processed - len(errors)
        await ctx.fail_on_row_errors(batch.position, errors)
        return errors

    async def drain() -> None:
        """Before waiting in a pause: the batch in flight lands and is recorded."""
        nonlocal in_flight
        if in_flight is not None:
            last, in_flight = in_flight, None
            await ctx.persist(last.position, await land(last))

    source = await ctx.db.uploads.reader(ObjectId(params["file_id"]), start.offset)
    batches = None
    try:
        batches = built_batches(
            source.read, start, params["batch_size"], ctx.settings.batch_max_bytes, builder, ctx.workers
        )
        async for built in batches:
            docs, sources, errors, processed, position = (
                built.docs, built.sources, built.errors, built.processed, built.position
            )
            if errors and fail_fast:
                # Stop at the first bad row: nothing after it is written.
                first_bad = errors[0]["row"]
                keep = sum(1 for s in sources if s.row < first_bad)
                docs, sources, errors = docs[:keep], sources[:keep], errors[:1]
                processed = first_bad - built.first_row + 1
            batch = (docs, sources, processed, position, errors)
            if in_flight is None:
                in_flight = send(*batch)
            else:
                done, in_flight = in_flight, None
                done_errors = await land(done)
                if ctx.stop_known():
                    # Pause or stop here, with nothing in flight.
                    await ctx.checkpoint(done.position, done_errors)
                    in_flight = send(*batch)
                else:
                    in_flight = send(*batch)
                    await ctx.checkpoint(done.position, done_errors, on_pause=drain)
            if errors and fail_fast:
                break
        if in_flight is not None:
            last, in_flight = in_flight, None
            await ctx.checkpoint(last.position, await land(last))
    finally:
        if batches is not None:
            await batches.aclose()  # no worker keeps building for a job that stopped
        if in_flight is not None:
            # Stopped with an insert in flight: let it land (it is part of the
            # job's writes, found by rollback) rather than cancel it midway.
            await asyncio.gather(in_flight.insert, return_exceptions=True)
        await source.close()
    # The count made while uploading is exact for RFC 4180 files; a file with
    # stray quotes can differ, and the final number is the one that was read.
    progress["total"] = progress["processed"]
    progress["percent"] = 100.0
    async with ctx.fenced():
        await profiles.record_import(ctx.db.profiles, ctx.org_id, params["dataset"], _summary(ctx, builder))


def _summary(ctx: JobContext, builder: RowBuilder) -> dict[str, Any]:
    """What the dataset's profile keeps of this import. Stored as the job's rows
    are all in, just before it completes; a terminate after that forgets it again.
    A job that moved to another replica midway profiled only the rows read there."""
    params = ctx.params
    return {
        "job_id": ctx.job_id,
        "at": utcnow(),
        "rows": ctx.progress.get("inserted", 0),
        "rows_profiled": builder.profile.rows,
        "columns": params["columns"],
        "types": column_specs(params),
        "profile": builder.profile.column_docs(),
    }


async def rollback(ctx: JobContext) -> None:
    """Delete every row the job inserted, in ranges of its deterministic _ids
    (a primary-key range on MongoDB), with progress; resumable from the range it
    reached. Rows are written at most two batches past the last checkpoint
    (batch k+1 is sent while batch k's checkpoint is being written); a final
    sweep over the job's whole _id prefix (still the primary key) catches
    anything else. Every delete is fenced by the job's lease."""
    ctx.inject_fault("rollback")
    records = ctx.db.records
    progress = ctx.progress
    progress.setdefault("rolled_back", 0)
    dataset = ctx.params["dataset"]
    checkpoint = ctx.position if ctx.position and "row" in ctx.position else {"row": 0}
    last_row = checkpoint["row"] + 2 * ctx.params["batch_size"]
    first = progress.get("rollback_next_row", 1)
    while first <= last_row:
        upto = first + ROLLBACK_ROWS
        async with ctx.fenced(undo=True):
            result = await records.delete_many(
                {
                    "_id": {
                        "$gte": record_id(ctx.org_id, dataset, ctx.job_id, first),
                        "$lt": record_id(ctx.org_id, dataset, ctx.job_id, upto),
                    },
                }
            )
        progress["rolled_back"] += result.deleted_count
        progress["rollback_next_row"] = first = upto
        await ctx.checkpoint()
    async with ctx.fenced(undo=True):
        result = await records.delete_many({"_id": prefix_range(job_prefix(ctx.org_id, dataset, ctx.job_id))})
    progress["rolled_back"] += result.deleted_count
    async with ctx.fenced(undo=True):
        await profiles.forget_import(ctx.db.profiles, ctx.org_id, dataset, ctx.job_id)
    await delete_upload(ctx)


async def cleanup(ctx: JobContext) -> None:
    """A completed import's upload is no longer needed; a failed one's is kept
    for a retry (it goes when the job is terminated)."""
    if ctx.outcome is not JobState.FAILED:
        await delete_upload(ctx)


async def delete_upload(ctx: JobContext) -> None:
    await ctx.db.uploads.delete(ObjectId(ctx.params["file_id"]))


KIND = Kind(name="import", run=run, rollback=rollback, cleanup=cleanup)
