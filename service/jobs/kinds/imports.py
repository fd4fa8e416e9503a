"""CSV import: stream the stored upload, type each row, insert batches into
``records`` tagged with the job id; roll back by deleting by that tag."""
from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from ...csvio.records import Position, Record, RecordReader
from ...csvio.schema import CONVERTERS
from ...errors import JobFailed
from ...store.files import delete_file
from ..model import utcnow
from ..runner import JobContext, Kind

ROLLBACK_CHUNK = 5000
DUPLICATE_KEY = 11000


def record_id(job_id: str, row: int) -> str:
    """Deterministic, so a batch replayed after a crash cannot insert a row twice;
    zero-padded, so ``_id`` order is file order within a job."""
    return f"{job_id}:{row:010d}"


class RowBuilder:
    """Turns parsed records into documents or row errors."""

    def __init__(self, ctx: JobContext) -> None:
        params = ctx.params
        self.columns: list[str] = params["columns"]
        self.width = len(self.columns)
        self.typed = [(i, c, CONVERTERS[params["types"][c]]) for i, c in enumerate(self.columns) if c in params["types"]]
        self.base = {"org_id": ctx.org_id, "dataset": params["dataset"], "job_id": ctx.job_id}

    def build(self, batch: list[Record]) -> tuple[list[dict[str, Any]], list[Record], list[dict[str, Any]]]:
        docs, sources, errors = [], [], []
        now = utcnow()
        job_id = self.base["job_id"]
        for record in batch:
            if record.error is not None:
                errors.append({"line": record.line, "row": record.row, "message": record.error})
                continue
            fields = record.fields
            if len(fields) != self.width:
                errors.append(
                    {
                        "line": record.line,
                        "row": record.row,
                        "message": f"expected {self.width} fields, found {len(fields)}",
                    }
                )
                continue
            data: dict[str, Any] = dict(zip(self.columns, fields))
            try:
                for index, column, convert in self.typed:
                    text = fields[index]
                    data[column] = convert(text) if text.strip() else None
            except ValueError as exc:
                errors.append(
                    {"line": record.line, "row": record.row, "message": f"column {column!r}: {text[:80]!r} is {exc}"}
                )
                continue
            docs.append(
                {"_id": record_id(job_id, record.row), **self.base, "row": record.row, "data": data, "created_at": now}
            )
            sources.append(record)
        return docs, sources, errors


async def insert_idempotent(
    collection: AsyncCollection, docs: list[dict[str, Any]], sources: list[Record]
) -> list[dict[str, Any]]:
    """insert_many that treats duplicate keys (a replayed batch) as done and turns
    any other rejected document into a row error, keeping the rest of the batch."""
    if not docs:
        return []
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = []
        for write_error in exc.details.get("writeErrors", []):
            if write_error.get("code") == DUPLICATE_KEY:
                continue
            record = sources[write_error["index"]]
            errors.append(
                {"line": record.line, "row": record.row, "message": f"rejected by the database: {write_error['errmsg']}"}
            )
        return errors
    return []


async def run(ctx: JobContext) -> None:
    params = ctx.params
    start = Position(**(ctx.position or params["data_start"]))
    progress = ctx.progress
    for key in ("processed", "inserted", "failed"):
        progress.setdefault(key, 0)
    progress.setdefault("total", params.get("rows"))
    builder = RowBuilder(ctx)
    fail_fast = params["on_error"] == "fail"
    max_errors = params["max_errors"]

    source = await ctx.db.uploads.open_download_stream(ObjectId(params["file_id"]))
    try:
        await source.seek(start.offset)
        reader = RecordReader(source.read, start)
        async for batch in reader.batches(params["batch_size"]):
            docs, sources, errors = builder.build(batch)
            processed = len(batch)
            if errors and fail_fast:
                # Stop at the first bad row: nothing after it is written.
                first_bad = errors[0]["row"]
                keep = sum(1 for s in sources if s.row < first_bad)
                docs, sources, errors = docs[:keep], sources[:keep], errors[:1]
                processed = first_bad - batch[0].row + 1
            errors += await insert_idempotent(ctx.db.records, docs, sources)
            errors.sort(key=lambda e: e["row"])
            progress["processed"] += processed
            progress["failed"] += len(errors)
            progress["inserted"] += processed - len(errors)
            position = reader.position().as_dict()
            if errors and (fail_fast or progress["failed"] > max_errors):
                await ctx.persist(position, errors)
                first = errors[0]
                reason = "on_error=fail" if fail_fast else f"more than max_errors={max_errors} rows failed"
                raise JobFailed(f"stopped at line {first['line']} ({reason}): {first['message']}")
            await ctx.checkpoint(position, errors)
    finally:
        await source.close()
    # The count made while uploading is exact for RFC 4180 files; a file with
    # stray quotes can differ, and the final number is the one that was read.
    progress["total"] = progress["processed"]
    progress["percent"] = 100.0


async def rollback(ctx: JobContext) -> None:
    """Delete every row the job inserted, found by its tag, in chunks with progress."""
    records = ctx.db.records
    progress = ctx.progress
    progress.setdefault("rolled_back", 0)
    while True:
        cursor = records.find({"job_id": ctx.job_id, "org_id": ctx.org_id}, {"_id": 1}, limit=ROLLBACK_CHUNK)
        ids = [doc["_id"] async for doc in cursor]
        if not ids:
            break
        result = await records.delete_many({"_id": {"$in": ids}, "job_id": ctx.job_id})
        progress["rolled_back"] += result.deleted_count
        await ctx.checkpoint()
    await cleanup(ctx)


async def cleanup(ctx: JobContext) -> None:
    await delete_file(ctx.db.uploads, ObjectId(ctx.params["file_id"]))


KIND = Kind(name="import", run=run, rollback=rollback, cleanup=cleanup)
