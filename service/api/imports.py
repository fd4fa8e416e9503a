"""POST /api/v1/jobs/import: stream a CSV upload into GridFS and queue its import."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from bson import ObjectId

from .. import audit
from ..auth.identity import Role, caller, requires
from ..csvio.records import Record, RecordCounter, RecordReader
from ..csvio.schema import (
    HEADER_LIMIT,
    Header,
    header_end,
    parse_header,
    parse_null_values,
    parse_types_param,
    resolve_types,
    split_specs,
)
from ..errors import BadRequest, InvalidCsv, PayloadTooLarge, RequestTimeout, TooManyRequests, UnsupportedMediaType
from ..jobs.params import ImportParams
from ..jobs.reservations import TOUCH_SECONDS, UPLOAD_BYTES, UPLOADS, Reservations
from ..profiles import store as profiles
from ..profiles.findings import compare_header
from ..profiles.guard import GUARDS
from ..profiles.review import FirstRows, ImportReview
from ..store.files import store_stream
from ..typedefs import DB_KEY, MANAGER_KEY, SETTINGS_KEY
from .common import (
    bool_param,
    choice_param,
    dataset_param,
    error_policy,
    int_param,
    job_response,
    json_response,
    org_of,
    query_params,
    raw_body,
)
from .idempotency import Claim, idempotent, replay_job

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"})
READ_CHUNK = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024
# An upload reserves its org's bytes ahead of what it has received, by as much
# as it has received so far and at most this much (then to the byte when the
# quota is nearly used up), and gives the rest back once stored.
RESERVE_STEP = 1024 * 1024
MAX_BATCH = 10_000
# Rows parsed and encoded per batch unless the request says otherwise: large,
# because each batch costs a checkpoint and the event loop's turns (the
# README's CPU benchmark has the figures). The writes go out in smaller units
# sized by time (service/jobs/fence.py), so a pause does not wait for a batch;
# a batch is also at most BATCH_MAX_BYTES (the setting) of the file.
IMPORT_BATCH = 10_000
DRY_RUN_BATCH = 1000
HEADER_MODES = ("any", "match")
IMPORT_PARAMS = ("dataset", "types", "batch_size", "on_error", "max_errors", "dry_run", "null_values", "guard", "header")


@dataclass
class CsvProbe:
    """Watches an upload go by: keeps its first bytes (for the header), counts
    records, and hashes it (what Idempotency-Key compares)."""

    head: bytearray
    counter: RecordCounter
    digest: Any = field(default_factory=hashlib.sha256)

    def __call__(self, chunk: bytes) -> None:
        if len(self.head) < HEADER_LIMIT:
            self.head += chunk[: HEADER_LIMIT - len(self.head)]
        self.counter.feed(chunk)
        self.digest.update(chunk)


async def csv_body(request: web.Request, max_bytes: int) -> tuple[AsyncIterator[bytes], str]:
    """The CSV bytes of the request, as a stream, and a file name: either the raw
    body (text/csv) or the multipart/form-data field ``file``."""
    idle = request.app[SETTINGS_KEY].upload_idle_seconds
    if request.content_type == "multipart/form-data":
        if request.content_length is not None and request.content_length > max_bytes + MULTIPART_OVERHEAD:
            raise too_large(max_bytes)
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise BadRequest("The multipart body has no field named 'file'.", parameter="file")
            if isinstance(part, BodyPartReader) and part.name == "file":
                return _idle_limited(_part_chunks(part), idle), part.filename or "upload.csv"
            if isinstance(part, BodyPartReader):
                await part.release()
    if request.content_type not in CSV_TYPES:
        raise UnsupportedMediaType(
            f"Send the CSV as text/csv or as the multipart/form-data field 'file', not {request.content_type!r}.",
            accepted=sorted(CSV_TYPES | {"multipart/form-data"}),
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    return _idle_limited(request.content.iter_chunked(READ_CHUNK), idle), raw_filename(request)


def raw_filename(request: web.Request) -> str:
    """A raw body's name: the filename of its Content-Disposition header when it
    has one (``curl -H 'Content-Disposition: attachment; filename=people.csv'``;
    ``curl -F file=@people.csv`` sends it in the multipart part), else upload.csv."""
    header = request.headers.get("Content-Disposition")
    if header:
        _, params = parse_content_disposition(header)
        name = content_disposition_filename(params, "filename")
        if name:
            name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()[:255]
            if name and name.isprintable():
                return name
    return "upload.csv"


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(READ_CHUNK):
        yield chunk


async def _idle_limited(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """The body's chunks, each within ``seconds`` of the last (UPLOAD_IDLE_SECONDS):
    a client that stops sending is answered 408 rather than holding its
    upload slot and its reserved bytes."""
    source = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(seconds):
                chunk = await anext(source)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(
                f"The upload sent nothing for {seconds:g} s (UPLOAD_IDLE_SECONDS); nothing of it is kept."
            ) from None
        yield chunk


async def upload_digest(request: web.Request) -> str:
    """The SHA-256 of the request's CSV, read as it streams and never stored:
    how a retried upload is compared with the first one."""
    max_bytes = request.app[SETTINGS_KEY].max_upload_bytes
    chunks, _ = await csv_body(request, max_bytes)
    digest, size = hashlib.sha256(), 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        digest.update(chunk)
    return digest.hexdigest()


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The upload is larger than the limit of {max_bytes} bytes (MAX_UPLOAD_BYTES).", limit=max_bytes)


class StreamedBody:
    """``read(n)`` over the request's chunks, for a CSV read once and never stored."""

    def __init__(self, chunks: AsyncIterator[bytes], max_bytes: int) -> None:
        self._chunks = chunks
        self._max = max_bytes
        self._pending = b""
        self.size = 0
        self.eof = False

    async def head(self) -> bytes:
        """The first bytes, up to and including the header record."""
        head = bytearray()
        while not self.eof and len(head) < HEADER_LIMIT and header_end(bytes(head), False) is None:
            head += await self._next()
        self._pending = bytes(head)
        return self._pending[:HEADER_LIMIT]

    def skip(self, size: int) -> None:
        """Drops the first ``size`` bytes of what head() returned (the header)."""
        self._pending = self._pending[size:]

    async def header(self) -> Header:
        """Reads and checks the header; read() then returns the data records' bytes."""
        head = await self.head()
        if not head:
            raise InvalidCsv("The request body is empty; send a CSV file with a header row.")
        header = parse_header(head, complete=self.eof)
        self.skip(header.data_start.offset)
        return header

    async def read(self, size: int) -> bytes:
        if self._pending:
            chunk, self._pending = self._pending, b""
            return chunk
        return await self._next()

    async def _next(self) -> bytes:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self.eof = True
            return b""
        self.size += len(chunk)
        if self.size > self._max:
            raise too_large(self._max)
        return chunk


@dataclass
class Upload:
    """A CSV upload stored in GridFS, with its header checked and records counted."""

    file_id: ObjectId
    size: int
    filename: str
    header: Header
    rows: int  # data records, header excluded
    sha256: str

    def params(self) -> dict[str, Any]:
        """What every job that reads the upload keeps in its params (UploadParams' fields)."""
        return {
            "filename": self.filename,
            "file_id": str(self.file_id),
            "file_bytes": self.size,
            "rows": self.rows,
            "header": self.header.names,
            "data_start": self.header.data_start.as_dict(),
        }


def over_quota(stored: int, quota: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"With this upload your organisation would store more than {quota} bytes of uploads that wait for "
        f"their jobs (MAX_UPLOAD_BYTES_PER_ORG; {stored} are held now); let them finish, or terminate the ones "
        "you do not need. Nothing of this upload is kept.",
        limit=quota,
    )


class UploadQuota:
    """Reserves the org's upload bytes (MAX_UPLOAD_BYTES_PER_ORG) for the bytes
    an upload has really received, as they arrive: a chunked body has no
    Content-Length, and an upload still streaming counts. The upload is cut
    with a 413 at the first chunk that would pass the quota. The share is
    the upload's job's (its holder), kept until the job's upload is deleted."""

    def __init__(self, reservations: Reservations, org_id: str, job_id: str, quota: int) -> None:
        self.reservations = reservations
        self.org_id, self.job_id, self.quota = org_id, job_id, quota
        self.received = self.reserved = 0
        self._touched = time.monotonic()

    async def count(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.received += len(chunk)
            if self.received > self.reserved:
                need = self.received - self.reserved
                for amount in (max(need, min(RESERVE_STEP, self.received)), need):
                    if await self._take(amount):
                        break
                else:
                    raise over_quota(await self.reservations.used(self.org_id, UPLOAD_BYTES), self.quota)
            elif time.monotonic() - self._touched > TOUCH_SECONDS:
                await self._take(0)  # still streaming: the share is not stale
            yield chunk

    async def _take(self, amount: int) -> bool:
        if not await self.reservations.take(self.org_id, UPLOAD_BYTES, self.job_id, amount, self.quota):
            return False
        self.reserved += amount
        self._touched = time.monotonic()
        return True

    async def settle(self) -> None:
        """Gives back what was reserved ahead of the bytes stored."""
        if self.reserved > self.received:
            await self.reservations.shrink(self.org_id, UPLOAD_BYTES, self.job_id, self.reserved - self.received)
            self.reserved = self.received


async def receive_csv(
    request: web.Request, metadata: dict[str, Any], check: Callable[[Header], None] = lambda header: None
) -> Upload:
    """Streams the request's CSV into the uploads bucket, then reads its header and
    runs ``check`` on it; on any error the stored file is deleted again. While
    it streams it holds one of the org's MAX_UPLOADS_PER_ORG upload slots, and
    it reserves the org's upload bytes as they arrive (UploadQuota)."""
    settings, db = request.app[SETTINGS_KEY], request.app[DB_KEY]
    reservations = request.app[MANAGER_KEY].reservations
    org_id, job_id = metadata["org_id"], metadata["job_id"]
    quota = settings.max_upload_bytes_per_org
    if request.content_length is not None and request.content_length > quota + MULTIPART_OVERHEAD:
        raise over_quota(0, quota)
    if not await reservations.take(org_id, UPLOADS, job_id, 1, settings.max_uploads_per_org):
        raise TooManyRequests(
            f"Your organisation has {settings.max_uploads_per_org} uploads in progress (MAX_UPLOADS_PER_ORG); "
            "retry once one of them has finished.",
            retry_after=10,
        )
    counter = UploadQuota(reservations, org_id, job_id, quota)
    try:
        chunks, filename = await csv_body(request, settings.max_upload_bytes)
        probe = CsvProbe(bytearray(), RecordCounter())
        stored = await store_stream(
            db.uploads, filename, counter.count(chunks), max_bytes=settings.max_upload_bytes, metadata=metadata, observe=probe
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
        await counter.settle()
    except BaseException:
        await asyncio.shield(reservations.release(org_id, UPLOAD_BYTES, job_id))
        raise
    finally:
        await asyncio.shield(reservations.release(org_id, UPLOADS, job_id))
    return Upload(stored.file_id, stored.size, filename, header, rows, probe.digest.hexdigest())


@dataclass(frozen=True)
class ImportOptions:
    """The query parameters that say how rows are read, checked and typed."""

    dataset: str
    types: dict[str, str]  # column as named in the request -> type spec
    auto: bool
    null_values: list[str]
    guard: str
    header: str

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ImportOptions:
        types, auto = parse_types_param(query.get("types", ""))
        return cls(
            dataset=dataset_param(query.get("dataset")),
            types=types,
            auto=auto,
            null_values=parse_null_values(query.get("null_values")),
            guard=choice_param(query, "guard", GUARDS, "warn"),
            header=choice_param(query, "header", HEADER_MODES, "any"),
        )

    def check_header(self, header: Header, imports: list[dict[str, Any]]) -> dict[str, str]:
        """The typed columns by stored name; with header=match, a 400 naming the
        differences unless the header is the dataset's columns in its order."""
        if self.header == "match" and imports:
            expected = imports[-1]["columns"]
            if header.columns != expected:
                differences = compare_header(header.columns, imports)
                said = [f"{name}: {', '.join(differences[name])}" for name in ("missing", "added") if differences[name]]
                if differences["reordered"]:
                    said.append("the columns are in another order")
                raise InvalidCsv(
                    f"header=match: the header is not the dataset's columns ({', '.join(expected)}); " + "; ".join(said) + ".",
                    parameter="header",
                    expected=expected,
                    found=header.columns,
                    missing=differences["missing"],
                    added=differences["added"],
                    reordered=differences["reordered"],
                )
        return resolve_types(self.types, header)


@requires(Role.OPERATOR)
@idempotent(upload_digest, replay_job)
@raw_body  # a CSV, streamed into GridFS
async def create_import(request: web.Request, claim: Claim) -> web.Response:
    """Accepts the upload (202) once it is stored and its header checked; the
    rows are imported by the job, which reports row errors by line number.
    With dry_run=true, reads the file instead and answers 200 with what it found."""
    db, manager = request.app[DB_KEY], request.app[MANAGER_KEY]
    org_id = org_of(request)
    query = query_params(request, IMPORT_PARAMS)
    options = ImportOptions.from_query(query)
    batch_size = int_param(query, "batch_size", IMPORT_BATCH, 1, MAX_BATCH)
    on_error, max_errors = error_policy(query)
    if bool_param(query, "dry_run", False):
        return await dry_run(request, org_id, options)
    imports = await profiles.history(db.profiles, org_id, options.dataset) if options.header == "match" else []

    job_id = claim.resource_id
    specs: dict[str, str] = {}

    def check(header: Header) -> None:
        specs.update(options.check_header(header, imports))

    async with manager.queue_slot(org_id, job_id):
        return await _accept_import(request, claim, org_id, options, check, specs, batch_size, on_error, max_errors)


async def _accept_import(
    request: web.Request,
    claim: Claim,
    org_id: str,
    options: ImportOptions,
    check: Callable[[Header], None],
    specs: dict[str, str],
    batch_size: int,
    on_error: str,
    max_errors: int,
) -> web.Response:
    settings, db, manager = request.app[SETTINGS_KEY], request.app[DB_KEY], request.app[MANAGER_KEY]
    job_id = claim.resource_id
    upload = await receive_csv(request, {"org_id": org_id, "job_id": job_id, "dataset": options.dataset}, check)
    header = upload.header
    inferred: dict[str, str] = {}
    if options.auto:
        first = FirstRows(header.columns, specs, options.null_values, settings.guard_rows)
        try:
            source = await db.uploads.reader(upload.file_id, header.data_start.offset)
            try:
                await first.read(source.read, header.data_start, settings.batch_max_bytes)
            finally:
                await source.close()
        except BaseException:
            await db.uploads.delete(upload.file_id)
            await manager.reservations.release(org_id, UPLOAD_BYTES, job_id)
            raise
        specs = inferred = first.inferred(specs)
    types, formats = split_specs(specs)
    await claim.bind(upload.sha256)
    job = await manager.create(
        {
            "_id": job_id,
            "org_id": org_id,
            "kind": "import",
            "created_by": caller(request).who(),
            "params": ImportParams(
                dataset=options.dataset,
                **upload.params(),
                columns=header.columns,
                column_mapping=header.mapping,
                types=types,
                formats=formats,
                types_auto=options.auto,
                inferred_types=inferred,
                null_values=options.null_values,
                guard=options.guard,
                header_mode=options.header,
                batch_size=batch_size,
                on_error=on_error,
                max_errors=max_errors,
            ).to_doc(),
        },
        progress={"processed": 0, "total": upload.rows, "inserted": 0, "failed": 0, "percent": 0.0},
    )
    await audit.record(request, "job.create", job_id=job_id, state_after=job["state"])
    return job_response(job, status=202)


async def dry_run(request: web.Request, org_id: str, options: ImportOptions) -> web.Response:
    """Reads the whole body once as it streams (never stored), types and profiles
    every row as the job would, compares with the dataset's history, writes nothing."""
    settings, db = request.app[SETTINGS_KEY], request.app[DB_KEY]
    imports = await profiles.history(db.profiles, org_id, options.dataset)
    chunks, _ = await csv_body(request, settings.max_upload_bytes)
    body = StreamedBody(chunks, settings.max_upload_bytes)
    header = await body.header()
    specs = options.check_header(header, imports)
    batches = RecordReader(body.read, header.data_start).batches(DRY_RUN_BATCH, settings.batch_max_bytes)
    held: list[Record] = []
    if options.auto:
        # The job infers types from its first GUARD_ROWS rows; so does its dry run,
        # holding those rows (and only those) until the types are known.
        first = FirstRows(header.columns, specs, options.null_values, settings.guard_rows)
        async for records in batches:
            held += records
            if not all(first.add(r) for r in records):
                break
        specs = first.inferred(specs)
    review = ImportReview(header.columns, specs, options.null_values, settings.guard_rows)
    review.add(held)
    del held
    async for records in batches:
        review.add(records)
    if review.rows == 0:
        raise InvalidCsv("The file has a header but no data rows.")
    return json_response(review.result(options.dataset, imports, options.auto))
