"""POST /api/v1/jobs/import: stream a CSV upload into GridFS and queue its import."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from bson import ObjectId

from ..csvio.records import RecordCounter
from ..csvio.schema import HEADER_LIMIT, Header, parse_header, parse_types, resolve_types
from ..errors import BadRequest, InvalidCsv, PayloadTooLarge, UnsupportedMediaType
from ..jobs.model import new_job_id
from ..store.files import store_stream
from ..typedefs import DB_KEY, MANAGER_KEY, SETTINGS_KEY
from .common import dataset_param, error_policy, int_param, job_response, org_of

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"})
READ_CHUNK = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024
MAX_BATCH = 10_000


@dataclass
class CsvProbe:
    """Watches an upload go by: keeps its first bytes (for the header) and counts records."""

    head: bytearray
    counter: RecordCounter

    def __call__(self, chunk: bytes) -> None:
        if len(self.head) < HEADER_LIMIT:
            self.head += chunk[: HEADER_LIMIT - len(self.head)]
        self.counter.feed(chunk)


async def csv_body(request: web.Request, max_bytes: int) -> tuple[AsyncIterator[bytes], str]:
    """The CSV bytes of the request, as a stream, and a file name: either the raw
    body (text/csv) or the multipart/form-data field ``file``."""
    if request.content_type == "multipart/form-data":
        if request.content_length is not None and request.content_length > max_bytes + MULTIPART_OVERHEAD:
            raise too_large(max_bytes)
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise BadRequest("The multipart body has no field named 'file'.", parameter="file")
            if isinstance(part, BodyPartReader) and part.name == "file":
                return _part_chunks(part), part.filename or "upload.csv"
            if isinstance(part, BodyPartReader):
                await part.release()
    if request.content_type not in CSV_TYPES:
        raise UnsupportedMediaType(
            f"Send the CSV as text/csv or as the multipart/form-data field 'file', not {request.content_type!r}.",
            accepted=sorted(CSV_TYPES | {"multipart/form-data"}),
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    return request.content.iter_chunked(READ_CHUNK), "upload.csv"


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(READ_CHUNK):
        yield chunk


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than the limit of {max_bytes} bytes (MAX_UPLOAD_BYTES).", limit=max_bytes
    )


@dataclass
class Upload:
    """A CSV upload stored in GridFS, with its header checked and records counted."""

    file_id: ObjectId
    size: int
    filename: str
    header: Header
    rows: int  # data records, header excluded

    def params(self) -> dict[str, Any]:
        """What every job that reads the upload keeps in its params."""
        return {
            "filename": self.filename,
            "file_id": str(self.file_id),
            "file_bytes": self.size,
            "rows": self.rows,
            "header": self.header.names,
            "data_start": self.header.data_start.as_dict(),
        }


async def check_storage_quota(db: Any, org_id: str, incoming: int, quota: int) -> None:
    """413 when the org's stored uploads (kept until their jobs complete or are
    terminated) and this one would pass MAX_UPLOAD_BYTES_PER_ORG."""
    stored = await db.uploads.stored_bytes(org_id)
    if stored + incoming > quota:
        raise PayloadTooLarge(
            f"Your organisation already stores {stored} bytes of uploads that wait for their jobs "
            f"(MAX_UPLOAD_BYTES_PER_ORG is {quota}); let them finish, or terminate the ones you do not need.",
            limit=quota,
        )


async def receive_csv(
    request: web.Request, metadata: dict[str, Any], check: Callable[[Header], None] = lambda header: None
) -> Upload:
    """Streams the request's CSV into the uploads bucket, then reads its header and
    runs ``check`` on it; on any error the stored file is deleted again."""
    settings, db = request.app[SETTINGS_KEY], request.app[DB_KEY]
    await check_storage_quota(db, metadata["org_id"], request.content_length or 0, settings.max_upload_bytes_per_org)
    chunks, filename = await csv_body(request, settings.max_upload_bytes)
    probe = CsvProbe(bytearray(), RecordCounter())
    stored = await store_stream(
        db.uploads, filename, chunks, max_bytes=settings.max_upload_bytes, metadata=metadata, observe=probe
    )
    try:
        if stored.size == 0:
            raise InvalidCsv("The request body is empty; send a CSV file with a header row.")
        header = parse_header(bytes(probe.head), complete=stored.size <= len(probe.head))
        rows = probe.counter.finish() - 1
        if rows <= 0:
            raise InvalidCsv("The file has a header but no data rows.")
        check(header)
    except BaseException:
        await db.uploads.delete(stored.file_id)
        raise
    return Upload(stored.file_id, stored.size, filename, header, rows)


async def create_import(request: web.Request) -> web.Response:
    """Accepts the upload (202) once it is stored and its header checked; the
    rows are imported by the job, which reports row errors by line number."""
    manager = request.app[MANAGER_KEY]
    org_id = org_of(request)
    query = request.query
    dataset = dataset_param(query.get("dataset"))
    types = parse_types(query.get("types", ""))
    batch_size = int_param(query, "batch_size", 1000, 1, MAX_BATCH)
    on_error, max_errors = error_policy(query)

    job_id = new_job_id()
    typed: dict[str, str] = {}

    def check(header: Header) -> None:
        typed.update(resolve_types(types, header))

    await manager.check_queue_quota(org_id)
    upload = await receive_csv(request, {"org_id": org_id, "job_id": job_id, "dataset": dataset}, check)
    header = upload.header
    job = await manager.create(
        {
            "_id": job_id,
            "org_id": org_id,
            "kind": "import",
            "params": {
                "dataset": dataset,
                **upload.params(),
                "columns": header.columns,
                "column_mapping": header.mapping,
                "types": typed,
                "batch_size": batch_size,
                "on_error": on_error,
                "max_errors": max_errors,
            },
        },
        progress={"processed": 0, "total": upload.rows, "inserted": 0, "failed": 0, "percent": 0.0},
    )
    return job_response(job, status=202)
