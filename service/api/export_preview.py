"""The preview of an export (POST /jobs/export?dry_run=true): how many rows
are in range, the first of them as the export would write them, and an
estimate of the file's size and the export's time, in seconds whatever the
size of the dataset, and written nothing.

Everything is read in windows of the dataset's _id range (a record's _id is
"org/dataset/job:row", the row zero-padded), each a short range of the
primary key that the _id index serves on MongoDB and on FerretDB alike and
that is sorted in a moment. A date filter is the part no index serves (on
MongoDB, unless the deployment adds one on ``data.<date field>``): a
count of it scans the dataset, so the count is exact when the database
answers within COUNT_SECONDS or the dataset is small enough to read whole,
and otherwise estimated from SAMPLE_WINDOWS windows spread evenly over the
dataset. The first rows are searched window after window from the start for
at most FIRST_ROWS_SECONDS."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ExecutionTimeout

from ..jobs.kinds.exports import CsvRenderer, export_query
from ..jobs.params import ExportParams
from ..jobs.repo import JobRepo
from ..store.records import job_prefix, row_id

PREVIEW_ROWS = 10
COUNT_SECONDS = 2.0
FIRST_ROWS_SECONDS = 3.0
SAMPLE_WINDOWS = 80
WINDOW_ROWS = 125
# Windows of the search for the first rows grow up to this many rows.
SEARCH_WINDOW_MAX = 20_000


@dataclass(frozen=True)
class Part:
    """One import's records: its _id prefix and its rows (row numbers 1..rows)."""

    prefix: str
    rows: int


def _window(part: Part, start: int, rows: int) -> dict[str, str]:
    return {"$gte": row_id(part.prefix, start), "$lt": row_id(part.prefix, min(start + rows, part.rows + 1))}


async def _parts(repo: JobRepo, org_id: str, params: ExportParams) -> list[Part]:
    return [
        Part(job_prefix(org_id, params.dataset, job["_id"]), int((job.get("params") or {}).get("rows") or 0))
        async for job in repo.imports(org_id, params.dataset, params.import_states, params.as_of())
    ]


def _matches(field: str | None, bounds: tuple[dt.datetime | None, dt.datetime | None], doc: dict[str, Any]) -> bool:
    if not field:
        return True
    value = (doc.get("data") or {}).get(field)
    if value is None or not hasattr(value, "tzinfo"):
        return False
    if value.tzinfo is None:  # a client without tz_aware reads naive UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    from_, to = bounds
    return (from_ is None or value >= from_) and (to is None or value < to)


class Preview:
    def __init__(
        self, records: AsyncCollection, org_id: str, params: ExportParams, imports: list[str], parts: list[Part]
    ) -> None:
        self.records, self.params, self.parts = records, params, parts
        self.bounds = params.bounds()
        self.query = export_query(org_id, params, imports)
        self.read = 0  # records read, and the seconds it took: the read rate
        self.read_seconds = 0.0

    async def window(self, part: Part, start: int, rows: int, filtered: bool, limit: int = 0) -> list[dict[str, Any]]:
        query = {**self.query, "_id": _window(part, start, rows)}
        if not filtered:
            query = {k: v for k, v in query.items() if not k.startswith("data.")}
        began = time.monotonic()
        docs = await self.records.find(query, {"data": 1}, sort=[("_id", 1)], limit=limit).to_list(None)
        self.read_seconds += time.monotonic() - began
        self.read += rows if filtered else len(docs)
        return docs

    async def first_rows(self) -> tuple[list[dict[str, Any]], bool]:
        """The first PREVIEW_ROWS rows in range in _id order, and whether the
        search was complete (it found them all, or read the whole dataset)."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + FIRST_ROWS_SECONDS
        size = 1_000
        for part in self.parts:
            start = 1
            while start <= part.rows:
                if time.monotonic() > deadline:
                    return found, False
                found += await self.window(part, start, size, True, PREVIEW_ROWS - len(found))
                if len(found) >= PREVIEW_ROWS:
                    return found[:PREVIEW_ROWS], True
                start += size
                size = min(size * 2, SEARCH_WINDOW_MAX)
        return found, True

    async def count(self, total: int) -> dict[str, Any]:
        """The rows in range: exact where that is cheap, else estimated."""
        if not self.params.date_field:
            return {"rows_in_range": total, "exact": True, "counted": "all rows of the dataset's imports, from their row counts"}
        if total <= SAMPLE_WINDOWS * WINDOW_ROWS:
            matched = 0
            for part in self.parts:
                for start in range(1, part.rows + 1, WINDOW_ROWS * 4):
                    matched += len(await self.window(part, start, WINDOW_ROWS * 4, True))
            return {"rows_in_range": matched, "exact": True, "counted": "every row read"}
        if COUNT_SECONDS > 0:
            try:
                began = time.monotonic()
                matched = await self.records.count_documents(self.query, maxTimeMS=max(1, int(COUNT_SECONDS * 1000)))
                self.read, self.read_seconds = self.read + total, self.read_seconds + time.monotonic() - began
                return {"rows_in_range": matched, "exact": True, "counted": "counted by the database"}
            except ExecutionTimeout:
                pass
        seen = matched = 0
        span = sum(p.rows for p in self.parts)
        for k in range(SAMPLE_WINDOWS):
            position = k * max(0, span - WINDOW_ROWS) // max(1, SAMPLE_WINDOWS - 1)
            for part in self.parts:
                if position < part.rows:
                    docs = await self.window(part, position + 1, WINDOW_ROWS, False)
                    seen += len(docs)
                    matched += sum(1 for d in docs if _matches(self.params.date_field, self.bounds, d))
                    break
                position -= part.rows
        share = matched / seen if seen else 0.0
        return {
            "rows_in_range": round(share * total),
            "exact": False,
            "counted": f"estimated from {seen:,} rows read in {SAMPLE_WINDOWS} windows spread over the dataset "
            f"({matched:,} in range); the database did not count the date filter within {COUNT_SECONDS:g} s",
        }


def _cells(params: ExportParams, docs: list[dict[str, Any]]) -> list[list[str]]:
    """The rows as the export writes them (the same renderer)."""
    renderer = CsvRenderer(params.columns, params.types, params.neutralize)
    renderer.add(docs)
    return list(csv.reader(io.StringIO(renderer.take().decode("utf-8"), newline="")))


async def preview(
    records: AsyncCollection, repo: JobRepo, org_id: str, params: ExportParams, imports: list[str], total: int
) -> dict[str, Any]:
    """What POST /jobs/export?dry_run=true answers; ``params`` are those
    export_params() validated, ``imports`` the ids of the imports it reads,
    ``total`` their rows."""
    job = Preview(records, org_id, params, imports, await _parts(repo, org_id, params))
    began = time.monotonic()
    first, complete = await job.first_rows()
    counted = await job.count(total)
    rows = _cells(params, first)
    header_bytes = len((",".join(params.columns) + "\r\n").encode())
    row_bytes = sum(len((",".join(r) + "\r\n").encode()) for r in rows) / len(rows) if rows else params.row_bytes
    rate = job.read / job.read_seconds if job.read_seconds > 0 and job.read else None
    return {
        "dry_run": True,
        "dataset": params.dataset,
        "columns": params.columns,
        **counted,
        "rows_read": total,
        "first_rows": rows,
        "first_rows_complete": complete,
        "estimate": {
            "bytes": round(header_bytes + counted["rows_in_range"] * row_bytes),
            # The export reads every row of the dataset's imports (a date filter is
            # applied to each), at about the rate this preview read them.
            "seconds": round(total / rate, 1) if rate else None,
            "rows_per_second": round(rate) if rate else None,
        },
        "preview_seconds": round(time.monotonic() - began, 2),
    }
