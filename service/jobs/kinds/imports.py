"""CSV import: stream the stored upload, type each row, insert batches into
``records`` tagged with the job id; roll back by deleting by that tag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...csvio.records import Record
from ...csvio.rows import TOO_LARGE, RowTyper, row_error
from ...profiles.guard import guard
from ...profiles.profile import PROFILE_ROWS, TableProfile
from ...store.records import RecordEncoder, job_prefix, prefix_range
from ...store.writes import MAX_DOCUMENT_BYTES, Encoded
from ..fence import Units
from ..model import utcnow
from ..params import ImportParams
from ..runner import JobContext, Kind
from ..workers import Built, built_batches

# Rows per delete command at most (a unit is sized by time below that):
# below SQLite's limit of 32,766 variables per statement, which FerretDB hits
# on larger deletes.
ROLLBACK_MAX_ROWS = 30_000
# The first unit of an insert or a delete, before its time is known.
FIRST_UNIT_ROWS = 1_000
# While the next batch is being built, a pause or stop is looked for this often.
STOP_LOOK_SECONDS = 0.05
# A rollback records its progress (and learns of a shutdown) this often.
CHECKPOINT_SECONDS = 1.0


class RowBuilder:
    """Turns parsed records into documents or row errors, and profiles a bounded,
    evenly spread sample of the rows for the dataset's profile."""

    def __init__(self, ctx: JobContext) -> None:
        params = ctx.params_as(ImportParams)
        self.columns: list[str] = params.columns
        self.typer = RowTyper(self.columns, params.column_specs(), params.null_values, ctx.decimal128)
        self.tags = (ctx.org_id, params.dataset, ctx.job_id)
        self.profile = TableProfile(self.columns, params.null_values)
        self.every = max(1, -(-(params.rows or 0) // PROFILE_ROWS))

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
                converted, error = convert(record)
                if error is not None:
                    errors.append(error)
                    continue
                # No row error: the record had fields, and these are their values.
                assert converted is not None and fields is not None
                data = converted
            raw = encode_record(record.row, data)
            if len(raw) > MAX_DOCUMENT_BYTES:
                errors.append(row_error(record, TOO_LARGE, f"the row is {len(raw):,} bytes as a document, over MongoDB's 16 MiB"))
                continue
            if record.row % every == 0:  # rows stored, like the profile's other rows
                profile.add(fields)
            docs.append(Encoded(raw))
            sources.append(record)
        return docs, sources, errors


def rejected_rows(sources: Sequence[Record], errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents the database refused (``index`` into ``sources``), as row errors."""
    return [
        {"line": sources[e["index"]].line, "row": sources[e["index"]].row, "message": f"rejected by the database: {e['errmsg']}"}
        for e in errors
    ]


@dataclass
class _Batch:
    """A built batch on its way to the database: ``sent`` of its documents
    have landed (a pause or stop may cut it between two units)."""

    docs: list[Encoded]
    sources: Sequence[Record]
    processed: int
    start: dict[str, int]  # the position before it: where a cut batch resumes
    position: dict[str, int]  # the position after it
    errors: list[dict[str, Any]]
    sent: int = 0
    insert: asyncio.Task[None] | None = None

    @property
    def landed(self) -> bool:
        return self.sent == len(self.docs)

    async def wait(self) -> None:
        assert self.insert is not None
        await self.insert


async def run(ctx: JobContext) -> None:
    """Keeps the database busy with one batch in flight: batch k+1 is parsed
    and encoded while batch k is inserted. A batch goes out in units sized by
    the time they take (service/jobs/fence.py), and a pause, terminate or
    shutdown known here stops it between two units: a pause lands within
    about one unit whatever the batch size. A batch cut short is not counted;
    the job pauses (or stops) at the position before it, and sends the rest
    of it when resumed (a replayed row is a no-op: its _id exists)."""
    params = ctx.params_as(ImportParams)
    start = params.start(ctx.position)
    data_start = params.data_start["offset"]
    progress = ctx.progress
    for key in ("processed", "inserted", "failed"):
        progress.setdefault(key, 0)
    progress.setdefault("total", params.rows)
    await guard(ctx)
    builder = RowBuilder(ctx)
    fail_fast = params.fail_fast
    units = Units(FIRST_UNIT_ROWS, params.batch_size)
    in_flight: _Batch | None = None
    cut: _Batch | None = None
    leaving = False

    def stop() -> bool:
        return leaving or ctx.stop_known()

    async def insert(batch: _Batch) -> None:
        def landed(n: int, errors: list[dict[str, Any]]) -> None:
            batch.errors += rejected_rows(batch.sources[batch.sent : batch.sent + n], errors)
            batch.sent += n

        # The org's record quota, measured in CSV bytes imported: reserved up to
        # this batch's end before any of it is sent.
        await ctx.stored_records.reserve(batch.position["offset"] - data_start)
        await ctx.records.insert(units, batch.docs[batch.sent :], stop, landed)

    def send(batch: _Batch) -> _Batch:
        batch.insert = asyncio.create_task(insert(batch))
        return batch

    async def land(batch: _Batch) -> list[dict[str, Any]]:
        """Waits for the batch until all of it has landed, counts it and applies
        the row-error policy (which may fail the job); returns its row errors.
        A batch cut short pauses (or stops) the job here, with nothing in
        flight, and is sent on when the job resumes."""
        await batch.wait()
        while not batch.landed:
            await ctx.checkpoint(batch.start)
            await send(batch).wait()
        errors = sorted(batch.errors, key=lambda e: e["row"])
        progress["processed"] += batch.processed
        progress["failed"] += len(errors)
        progress["inserted"] += batch.processed - len(errors)
        await ctx.fail_on_row_errors(batch.position, errors)
        return errors

    async def drain() -> None:
        """Before waiting in a pause: the batch in flight stops at a unit
        boundary; a whole one is recorded, a cut one is sent on after resume."""
        nonlocal in_flight, cut
        if in_flight is not None:
            last, in_flight = in_flight, None
            await last.wait()
            if last.landed:
                await ctx.persist(last.position, await land(last))
            else:
                cut = last

    if not progress.get("wrote"):
        # Recorded before the first row is sent: a rollback of a job that
        # never wrote has nothing to delete and ends at once.
        progress["wrote"] = True
        await ctx.persist()
    source = await ctx.upload.reader(start.offset)
    batches = None
    pending: asyncio.Future[Built] | None = None
    before = start.as_dict()

    async def next_built() -> Built | None:
        """The next built batch (None at the end). While it is being built, a
        pause or stop known here is acted on as soon as nothing is in flight
        (the batch in flight stops at its next unit boundary): the job does
        not wait for a whole batch to be parsed before it pauses."""
        nonlocal pending, in_flight
        assert batches is not None
        pending = asyncio.ensure_future(anext(batches))
        while not pending.done():
            inserting = {in_flight.insert} if in_flight is not None and in_flight.insert is not None else set()
            await asyncio.wait({pending, *inserting}, timeout=STOP_LOOK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if not ctx.stop_known() or any(not t.done() for t in inserting):
                continue
            if in_flight is not None:
                last, in_flight = in_flight, None
                await ctx.checkpoint(last.position, await land(last))  # a cut batch pauses at its start first
            else:
                await ctx.checkpoint()
        done, pending = pending, None
        try:
            return done.result()
        except StopAsyncIteration:
            return None

    try:
        batches = built_batches(source.read, start, params.batch_size, ctx.settings.batch_max_bytes, builder, ctx.workers)
        while (built := await next_built()) is not None:
            docs, sources, errors, processed, position = (
                built.docs,
                built.sources,
                built.errors,
                built.processed,
                built.position,
            )
            if errors and fail_fast:
                # Stop at the first bad row: nothing after it is written.
                first_bad = errors[0]["row"]
                keep = sum(1 for s in sources if s.row < first_bad)
                docs, sources, errors = docs[:keep], sources[:keep], errors[:1]
                processed = first_bad - built.first_row + 1
            batch = _Batch(docs, sources, processed, before, position, list(errors))
            before = position
            if in_flight is None:
                in_flight = send(batch)
            else:
                done, in_flight = in_flight, None
                done_errors = await land(done)
                if ctx.stop_known():
                    # Pause or stop here, with nothing in flight.
                    await ctx.checkpoint(done.position, done_errors)
                    in_flight = send(batch)
                else:
                    in_flight = send(batch)
                    await ctx.checkpoint(done.position, done_errors, on_pause=drain)
                    if cut is not None:  # resumed after a pause that cut this batch: send the rest
                        rest, cut = cut, None
                        await ctx.checkpoint(rest.position, await land(send(rest)))
            if errors and fail_fast:
                break
        if in_flight is not None:
            last, in_flight = in_flight, None
            await ctx.checkpoint(last.position, await land(last))
    finally:
        leaving = True
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        if batches is not None:
            await batches.aclose()  # no worker keeps building for a job that stopped
        if in_flight is not None and in_flight.insert is not None:
            # Stopped with a batch in flight: it ends at its next unit boundary
            # (what landed is part of the job's writes, found by rollback).
            await asyncio.gather(in_flight.insert, return_exceptions=True)
        await source.close()
    # The count made while uploading is exact for RFC 4180 files; a file with
    # stray quotes can differ, and the final number is the one that was read.
    progress["total"] = progress["processed"]
    progress["percent"] = 100.0
    await ctx.profiles.record(_summary(ctx, builder))


def _summary(ctx: JobContext, builder: RowBuilder) -> dict[str, Any]:
    """What the dataset's profile keeps of this import. Stored as the job's rows
    are all in, just before it completes; a terminate after that forgets it again.
    A job that moved to another replica midway profiled only the rows read there."""
    params = ctx.params_as(ImportParams)
    return {
        "job_id": ctx.job_id,
        "at": utcnow(),
        "rows": ctx.progress.get("inserted", 0),
        "rows_profiled": builder.profile.rows,
        "columns": params.columns,
        "types": params.column_specs(),
        "profile": builder.profile.column_docs(),
    }


async def rollback(ctx: JobContext) -> None:
    """Delete every row the job inserted, in ranges of its deterministic _ids
    (a primary-key range on MongoDB) sized by the time they take, with
    progress; resumable from the range it reached. Rows are written at most
    two batches past the last checkpoint (batch k+1 is sent while batch k's
    checkpoint is being written); a final sweep over the job's whole _id
    prefix (still the primary key) catches anything else. A job that never
    sent a row has nothing to delete. Every delete is fenced by the job's
    lease and names the job."""
    ctx.inject_fault("rollback")
    progress = ctx.progress
    progress.setdefault("rolled_back", 0)
    # (A job from before the "wrote" mark existed says so by its position or counts.)
    if progress.get("wrote") or ctx.position is not None or progress.get("processed", 0) > 0:
        if "rollback_total" not in progress:
            # What there is to delete, counted once: the final count is then
            # exact even when a delete's answer was lost (it timed out on the
            # client but landed, and its rows were not counted).
            progress["rollback_total"] = await ctx.records.count()
        checkpoint = ctx.position if ctx.position and "row" in ctx.position else {"row": 0}
        last_row = checkpoint["row"] + 2 * ctx.params_as(ImportParams).batch_size
        units = Units(FIRST_UNIT_ROWS, ROLLBACK_MAX_ROWS)

        def done(n: int, deleted: int) -> None:
            progress["rolled_back"] += deleted
            progress["rollback_next_row"] = progress.get("rollback_next_row", 1) + n

        while (first := progress.get("rollback_next_row", 1)) <= last_row:
            since = time.monotonic()
            await ctx.records.delete_rows(
                units,
                range(first, last_row + 1),
                lambda: time.monotonic() - since > CHECKPOINT_SECONDS,  # noqa: B023 (called within this iteration)
                done,
            )
            await ctx.checkpoint()
        progress["rolled_back"] += await ctx.records.delete_all()
        progress["rolled_back"] = max(progress["rolled_back"], progress["rollback_total"])
        await ctx.profiles.forget()
        await ctx.stored_records.release()
    await ctx.upload.delete()


async def cleanup(ctx: JobContext) -> None:
    """A completed import's upload is no longer needed (a failed one keeps it
    for a retry; its rollback deletes it)."""
    await ctx.upload.delete()


async def undo_preview(db: Any, repo: Any, job: dict[str, Any]) -> dict[str, Any]:
    """What an undo would delete: the job's rows as they are now (a count over
    its _id prefix, the primary key). Rows another writer deleted since are
    the difference from ``inserted``. Rows another writer changed since cannot
    be told cheaply: the service never updates a record, and an outside update
    leaves no mark on it (finding them would mean comparing every row with its
    file); an undo deletes them with the rest, as a terminate would."""
    dataset = ImportParams.from_doc(job["params"]).dataset
    query = {"_id": prefix_range(job_prefix(job["org_id"], dataset, job["_id"]))}
    rows = await db.records.count_documents(query)
    inserted = (job.get("progress") or {}).get("inserted", 0)
    return {
        "rows": rows,
        "inserted": inserted,
        "deleted_since": max(0, inserted - rows),
        "changed_since": None,
        "dataset": dataset,
    }


KIND = Kind(
    name="import",
    params=ImportParams,
    run=run,
    rollback=rollback,
    cleanup=cleanup,
    org_limit=lambda settings: settings.max_imports_per_org,
    # Undo deletes by the job's _id prefix, whatever was edited since; the
    # dataset's profile forgets the import (rollback's profiles.forget()).
    undoable=True,
    undo_preview=undo_preview,
)
