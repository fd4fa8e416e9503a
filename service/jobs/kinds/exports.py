"""CSV export: read a dataset's records through one cursor in _id order and
write RFC 4180 CSV into a GridFS file (background) or an HTTP response
(streamed). Pausing closes the cursor; resume re-queries after the last _id.
A background export adopted after a crash goes on from its last durable
position (see run)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import re
import time
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Protocol

from aiohttp import ClientConnectionResetError
from bson import Decimal128, ObjectId
from pymongo.errors import OperationFailure

from ...csvio.schema import is_decimal_text
from ...datasets import imports_digest
from ...errors import JobFailed
from ...store.db import Database
from ...store.records import dataset_prefix, job_prefix, prefix_range
from ...store.windows import WindowedReader
from ..fence import FencedWriter, QuotaExceeded, delete_attempts
from ..params import ExportParams
from ..reservations import RESULT_BYTES, Reservations
from ..runner import JobContext, Kind

log = logging.getLogger(__name__)

# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A formula start right after the separator: searched in a row's non-empty
# cells joined by NUL, one C call per row instead of a look at every cell. A
# NUL inside a cell can only cause a needless slow path, never a missed formula.
FORMULA_IN_JOINED = re.compile("\x00[=+\\-@\t\r]")
NUMERIC = frozenset({"int", "float", "decimal"})
# One reply of the cursor is bounded too: MongoDB caps it at 16 MiB, FerretDB
# does not (10,000 rows of 100 KB came as one 1 GB reply, over its 48 MB wire
# limit, and broke the download off).
REPLY_MAX_BYTES = 1024 * 1024
# csv.writer copies a field character by character: the loop gets a turn after
# every this many bytes of CSV (the README's benchmarks say what that costs).
RENDER_SLICE = 128 * 1024
CURSOR_NOT_FOUND = 43
# An export's imports are looked at this often: one undone or terminated under
# it stops the export. (Completed imports stay; a failed one, when an export
# asked for failed imports too, stays while it is failed, retried or running.)
GONE_CHECK_SECONDS = 1.0
KEPT_IMPORT_STATES = frozenset({"completed", "failed", "queued", "running", "pausing", "paused"})
# A batch of rows is written and checkpointed at least this often.
BATCH_SECONDS = 0.25
# A background export's file is stored up to its end (its short last chunk
# rewritten) and its resumable position taken this often, not at every
# batch, and less often when a sync is slow, so that syncs take at most
# DURABLE_SHARE of the export's time (bench/export_resume_bench.py).
DURABLE_SECONDS = 2.0
DURABLE_SHARE = 0.1
PLAIN_CELLS = frozenset({str, type(None)})
DISCONNECTED = (ConnectionResetError, ClientConnectionResetError)
_DATA = itemgetter("data")


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...


class ClientStalled(Exception):
    """The download's client accepted no bytes for STREAM_IDLE_SECONDS."""


class ResponseSink:
    """A streamed export's aiohttp StreamResponse (already prepared). A batch
    is written a piece at a time, and a piece the client does not take within
    ``idle_seconds`` (it stopped reading, or reads under a piece per that
    time) raises ClientStalled: the download ends, and its slots with it. A
    slow but steady client is not cut: the time is per piece, not per batch."""

    PIECE = 64 * 1024  # aiohttp's write waits until its buffer is under 64 KiB

    def __init__(self, response: Any, idle_seconds: float = 60.0) -> None:
        self.response = response
        self.idle_seconds = idle_seconds

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), self.PIECE):
            try:
                async with asyncio.timeout(self.idle_seconds):
                    await self.response.write(view[start : start + self.PIECE])
            except TimeoutError:
                raise ClientStalled(f"the client accepted no bytes for {self.idle_seconds:g} s (STREAM_IDLE_SECONDS)") from None


def export_query(org_id: str, params: ExportParams, imports: list[str]) -> dict[str, Any]:
    """The filter, built only from validated parts: the dataset's _id range, the
    imports whose rows it reads (completed ones, fixed when the export was
    created), and a date range on a column the dataset is known to have."""
    query: dict[str, Any] = {
        "_id": prefix_range(dataset_prefix(org_id, params.dataset)),
        "org_id": org_id,
        "dataset": params.dataset,
        "job_id": {"$in": imports},
    }
    if params.date_field:
        from_, to = params.bounds()
        bounds: dict[str, Any] = {}
        if from_ is not None:
            bounds["$gte"] = from_
        if to is not None:
            bounds["$lt"] = to
        query[f"data.{params.date_field}"] = bounds
    return query


class CsvRenderer:
    """Renders records as CSV text, a slice of rows at a time, kept until take()."""

    def __init__(self, columns: list[str], types: dict[str, str], neutralize: bool) -> None:
        self.columns = columns
        self.numeric = {c for c in columns if types.get(c) in NUMERIC}
        # A `date` column's midnights are written as the dates they were imported
        # from (2017-08-01, not 2017-08-01T00:00:00Z), so an export re-imports as it came.
        self.dates = {c for c in columns if types.get(c) == "date"}
        self.neutralize = neutralize
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")
        # A record's cells in column order, in C; one column would be a bare value.
        self._cells = itemgetter(*columns) if len(columns) > 1 else None
        self.parts: list[str] = []
        self.pending = 0  # characters rendered since the last take()
        self.rows = 0  # rendered so far, and their length: the average row sizes slices
        self.chars = 0

    def header(self) -> bytes:
        # Column names are text from an uploaded file: neutralised like text cells.
        self.writer.writerow([self._cell("", name) for name in self.columns])
        return self._rendered().encode("utf-8")

    def add(self, docs: list[dict[str, Any]]) -> int:
        """Renders records after the pending text; returns the pending length,
        so the batch can end at a byte budget. Most rows are text and empty
        cells, which csv.writer writes as they are: such a slice is gathered,
        checked and written with C calls for all its rows (a Python loop per
        row was most of an export's CPU). A slice with other values, or with a
        cell a spreadsheet would run, is written row by row, and only a row
        with one goes through _cell."""
        rows = self._row_values(docs)
        if self._plain(list(chain.from_iterable(rows))):
            self.writer.writerows(rows)
        else:
            for row in rows:
                if self._plain(row):
                    self.writer.writerow(row)
                else:
                    cell = self._cell
                    self.writer.writerow([cell(c, v) for c, v in zip(self.columns, row)])
        text = self._rendered()
        self.parts.append(text)
        self.pending += len(text)
        self.rows += len(docs)
        self.chars += len(text)
        return self.pending

    def _row_values(self, docs: list[dict[str, Any]]) -> list[Any]:
        if self._cells is not None:
            try:
                return list(map(self._cells, map(_DATA, docs)))
            except KeyError:  # a record without some column: an empty cell
                pass
        return [list(map(doc["data"].get, self.columns)) for doc in docs]

    def _plain(self, cells: Sequence[Any]) -> bool:
        """Only text and empty cells, and no formula if formulas are neutralized.
        All text, the common case, costs one join (it refuses anything else);
        otherwise each cell's type is looked at."""
        try:
            joined = "\x00".join(cells)
        except TypeError:
            if not set(map(type, cells)) <= PLAIN_CELLS:
                return False
            joined = "\x00".join(filter(None, cells))
        return not (self.neutralize and FORMULA_IN_JOINED.search("\x00" + joined))

    def slice_rows(self, room: int) -> int:
        """Rows to render before the event loop gets a turn and the byte budget
        is looked at again: about RENDER_SLICE characters, and no more than
        ``room`` (what is left of the batch's budget), at the average row
        length so far; a single row until there is an average."""
        if not self.rows:
            return 1
        return max(1, min(RENDER_SLICE, room) * self.rows // max(1, self.chars))

    def take(self) -> bytes:
        data = "".join(self.parts).encode("utf-8")
        self.parts = []
        self.pending = 0
        return data

    def _cell(self, column: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            if column in self.dates and value.utcoffset() == dt.timedelta(0) and value.time() == dt.time(0):
                return value.date().isoformat()
            return value.isoformat().replace("+00:00", "Z")
        if column in self.numeric and (isinstance(value, (int, float, Decimal128)) or is_decimal_text(value)):
            # A decimal is Decimal128, or its exact text where the server has no Decimal128 (FerretDB).
            return repr(value) if isinstance(value, float) else str(value)
        text = str(value)
        if self.neutralize and text.startswith(FORMULA_STARTS):
            return "'" + text
        return text

    def _rendered(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def cursor_batch(params: ExportParams) -> int:
    """Documents per cursor reply, so one reply stays near REPLY_MAX_BYTES: from
    the dataset's widest average row (known from its imports' files) plus what
    BSON adds per column (its name, a type byte, a length) and per document."""
    doc = params.row_bytes + sum(len(c) + 8 for c in params.columns) + 256
    return max(1, min(params.batch_size, REPLY_MAX_BYTES // doc))


async def read_imports(ctx: JobContext, params: ExportParams) -> list[str]:
    """The ids of the imports the export reads: those that had finished when
    it was created (ExportParams.imports_as_of), all still there, or it fails.
    An export stored before that listed them itself."""
    if params.jobs is not None:
        return params.jobs
    imports = await ctx.dataset_imports(params.dataset, params.import_states, params.as_of())
    changed = len(imports) != params.imports or (
        params.imports_digest is not None and imports_digest(imports) != params.imports_digest
    )
    if changed:
        raise JobFailed(
            f"the imports of dataset {params.dataset!r} this export reads are not those it was created over "
            f"({params.imports}; {len(imports)} of them now): one was undone, terminated or retried since; "
            "start a new export for the data as it is now",
            retryable=False,
        )
    return imports


async def start_file(ctx: JobContext, grid: FencedWriter) -> dict[str, Any] | None:
    """Where a background export goes on: the last durable position of an
    earlier attempt (or of this one's run before an outage), once this
    attempt's file holds the same bytes; None to start from the beginning."""
    position = ctx.position or {}
    if position.get("file_id") is not None:
        if await grid.resume(position["file_id"], position["bytes"]):
            log.info("job %s: export resumed at row %s, byte %s", ctx.job_id, position["rows"], position["bytes"])
            return position
        log.warning("job %s: the export's checkpointed file is gone; starting it again", ctx.job_id)
    await grid.reset()
    ctx.position = None
    return None


async def run(ctx: JobContext) -> None:
    """A background export goes on from its last durable position, in this
    attempt's own file, whoever wrote the bytes before it: that position is
    taken every DURABLE_SECONDS or more (and before a pause or shutdown), the file's
    bytes so far stored, short last chunk included. The checkpoints between
    record progress only. A streamed export restarts from the beginning
    whenever it is started (its client is gone when it could be adopted). A
    pause within one run re-queries after the last row written."""
    params = ctx.params_as(ExportParams)
    records = ctx.all_records
    imports = await read_imports(ctx, params)
    query = export_query(ctx.org_id, params, imports)
    batch_size = params.batch_size
    max_bytes = ctx.settings.batch_max_bytes
    renderer = CsvRenderer(params.columns, params.types, params.neutralize)
    progress = ctx.progress

    grid: FencedWriter | None = None
    sink: Sink
    resumed: dict[str, Any] | None = None
    if ctx.sink is None:
        # This attempt's own file: an attempt that stalls and wakes after
        # another took the job over can only ever touch its own.
        grid = ctx.results.writer(params.filename)
        sink = grid
        resumed = await start_file(ctx, grid)
    else:
        sink = ctx.sink
    if resumed is None:
        progress.update(processed=0, bytes=0, percent=0.0, total=params.expected_rows)
    else:
        progress.update(processed=resumed["rows"], bytes=resumed["bytes"])
    # A filtered export's total is counted once, beside the export rather than
    # before it: the download starts at once, and the total shows when known.
    counting = asyncio.create_task(records.count_documents(query)) if progress.get("total") is None else None

    def take_count() -> None:
        if counting is not None and counting.done() and not counting.cancelled() and not counting.exception():
            progress["total"] = counting.result()

    checked_at = time.monotonic()

    async def imports_still_there(now: bool = False) -> None:
        """An import this export reads that is being undone or terminated takes
        its rows away under the export: the export stops (it would be neither
        the data it was asked for nor the data there is now). Looked at once a
        second, by the imports' ids."""
        nonlocal checked_at
        if (not now and time.monotonic() - checked_at < GONE_CHECK_SECONDS) or not imports:
            return
        checked_at = time.monotonic()
        states = await ctx.states_of(imports)
        gone = sorted(j for j in imports if states.get(j) not in KEPT_IMPORT_STATES)
        if gone:
            raise JobFailed(
                f"import {gone[0]} of dataset {params.dataset!r} was undone or terminated while this export "
                "read it; start a new export for the data as it is now",
                retryable=False,
            )

    async def emit(data: bytes) -> None:
        if grid is not None:
            await ctx.stored_results.reserve(progress["bytes"] + len(data))
        try:
            await sink.write(data)
        except DISCONNECTED:
            await ctx.terminate_self("the client disconnected")
        except ClientStalled as stalled:
            await ctx.terminate_self(str(stalled))
        progress["bytes"] += len(data)

    last_id = None if resumed is None else resumed["last_id"]
    durable_at = time.monotonic() + DURABLE_SECONDS
    stored = resumed

    async def durable() -> dict[str, Any]:
        """Stores the file so far and names the position it ends at."""
        nonlocal durable_at, stored
        assert grid is not None
        took = 0.0
        if stored is None or stored["bytes"] != grid.written or stored["file_id"] != ctx.results.file_id:
            started = time.monotonic()
            length = await grid.sync()
            took = time.monotonic() - started
            stored = {"last_id": last_id, "file_id": ctx.results.file_id, "bytes": length, "rows": progress["processed"]}
        durable_at = time.monotonic() + max(DURABLE_SECONDS, took / DURABLE_SHARE)
        return stored

    try:
        if resumed is None:
            await emit(renderer.header())
        while True:
            # Each pass holds one cursor; a pause closes it and the next pass
            # re-queries after the last _id written.
            # A reply at a time (decoded by the driver in C): iterating a
            # cursor document by document costs a coroutine per row, and
            # find_raw_batches wraps each document in Python before joining them.
            # Read in windows of one import's _id range after the last _id
            # written (service/store/windows.py): the first row never waits
            # for the database to sort the whole match.
            per_reply = cursor_batch(params)
            prefixes = [job_prefix(ctx.org_id, params.dataset, j) for j in imports]
            cursor = WindowedReader(records, query, {"data": 1}, prefixes, per_reply, after=last_id)
            paused = lost = False

            async def reply() -> list[dict[str, Any]]:
                """The cursor's next reply; [] at the end, or when the server
                dropped the cursor (idle too long on a loaded server): the rows
                rendered since the last batch written are then dropped, and
                the next pass reads them again after the last _id written."""
                nonlocal lost
                try:
                    return await cursor.to_list(per_reply)  # noqa: B023 (called within this iteration)
                except OperationFailure as exc:
                    if exc.code != CURSOR_NOT_FOUND:
                        raise
                    lost = True
                    return []

            async def on_pause() -> None:
                await cursor.close()  # noqa: B023 (called within this iteration)
                if grid is not None:  # a paused job may be resumed anywhere: from here
                    ctx.position = await durable()

            try:
                # A batch is rendered as its records arrive, a slice of a reply
                # at a time, and ends at batch_size rows or max_bytes of CSV,
                # whichever comes first (a slice is about RENDER_SLICE long, and
                # no longer than the budget left, at the average row length).
                # A batch also ends after BATCH_SECONDS, so that a pause takes
                # effect within a fraction of a second on any database.
                rows, began = 0, time.monotonic()
                while docs := await reply():
                    start = 0
                    while start < len(docs):
                        room = max_bytes - renderer.pending
                        end = min(len(docs), start + min(batch_size - rows, renderer.slice_rows(room)))
                        pending = renderer.add(docs[start:end])
                        rows += end - start
                        start = end
                        if pending < max_bytes and rows < batch_size and time.monotonic() - began < BATCH_SECONDS:
                            await asyncio.sleep(0)
                            continue
                        await imports_still_there()  # before anything of this batch is written
                        await emit(renderer.take())
                        progress["processed"] += rows
                        last_id = docs[end - 1]["_id"]
                        rows, began = 0, time.monotonic()
                        take_count()
                        if grid is None:
                            position: dict[str, Any] | None = {"last_id": last_id}
                        elif time.monotonic() >= durable_at or ctx.stop_known():
                            position = await durable()
                        else:
                            position = None  # progress only: the last durable position stands
                        if await ctx.checkpoint(position, on_pause=on_pause):
                            paused = True
                            break
                    if paused:
                        break
                    last_doc = docs[-1]
                if lost:
                    log.warning("job %s: the export's cursor was lost; reading on after the last row written", ctx.job_id)
                    renderer.take()
                elif not paused and rows:
                    await emit(renderer.take())
                    progress["processed"] += rows
                    last_id = last_doc["_id"]
            finally:
                await cursor.close()
            if not (paused or lost):
                break
        progress["total"] = progress["processed"]
        await imports_still_there(now=True)  # and before it completes
        if grid is not None:
            await grid.close()
            # The epoch-fenced transition to completed points the job at this attempt's file.
            ctx.completion["params.file_id"] = ctx.results.file_id
        progress["percent"] = 100.0
    except QuotaExceeded:
        # The job fails (a retry continues once space is freed); what it
        # stored stops counting against the org until then.
        await ctx.stored_results.release()
        raise
    finally:
        if counting is not None:
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)


async def rollback(ctx: JobContext) -> None:
    """Terminate: every attempt's file goes (partial or finished); a streamed
    export has nothing stored."""
    if ctx.sink is None:
        await ctx.results.delete_all()
        await ctx.stored_results.release()


async def cleanup(ctx: JobContext) -> None:
    """A completed export keeps its file (its result) and drops the files of
    attempts that were interrupted (a failed one keeps them until it is
    retried and completes, or is terminated)."""
    if ctx.sink is None:
        await ctx.results.delete_superseded()


async def delete_result(db: Database, job: dict[str, Any]) -> None:
    """A finished export's stored files: its result and any attempt's."""
    params = ExportParams.from_doc(job["params"])
    if params.stream:
        return
    if ObjectId.is_valid(params.file_id or ""):
        await db.exports.delete(ObjectId(params.file_id))
    await delete_attempts(db.exports, job["_id"])
    await Reservations(db.reservations).release(job["org_id"], RESULT_BYTES, job["_id"])


def result_file_id(job: dict[str, Any]) -> Any:
    """The stored result of a completed export: the file of the attempt that
    finished (``job:epoch``), or, for a job from before attempts had their own
    files, the ObjectId it was created with."""
    file_id = ExportParams.from_doc(job["params"]).file_id
    return ObjectId(file_id) if file_id is not None and ObjectId.is_valid(file_id) else file_id


KIND = Kind(
    name="export",
    params=ExportParams,
    run=run,
    rollback=rollback,
    cleanup=cleanup,
    # Background exports; a streamed one holds a stream slot instead.
    org_limit=lambda settings: settings.max_exports_per_org,
    completed_deletable=True,
    delete_result=delete_result,
)
