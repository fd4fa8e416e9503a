"""Exports: POST /jobs/export (background, into GridFS), POST /exports/{dataset}.csv
(streamed into the response), GET /jobs/{id}/result (the stored CSV, with Range).
A plain GET never starts an export: browsers get a single-use download
ticket instead (service/api/downloads.py), which streams through here too."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp import web
from bson import ObjectId

from .. import audit
from ..auth.identity import Role, caller, requires
from ..csvio.schema import MAX_COLUMNS, parse_datetime
from ..datasets import COMMITTED, WITH_FAILED, describe, import_ids
from ..errors import BadRequest, Gone, InvalidTransition, NotFound
from ..jobs.kinds.exports import ResponseSink, result_file_id
from ..jobs.model import JobState, new_job_id
from ..jobs.params import ExportParams
from ..jobs.repo import JobRepo
from ..store.files import ChunkReader
from ..typedefs import DB_KEY, MANAGER_KEY
from .common import (
    bool_param,
    byte_range,
    dataset_param,
    int_param,
    job_response,
    json_object,
    json_response,
    org_of,
    query_params,
    raw_body,
)
from .export_preview import preview
from .idempotency import Claim, idempotent, json_body_digest, json_digest, replay_job

# Rows per checkpoint (see IMPORT_BATCH: the same per-batch costs).
EXPORT_BATCH = 10_000
DOWNLOAD_CHUNK = 256 * 1024
FIELDS = frozenset({"dataset", "date_field", "from", "to", "fields", "neutralize_formulas", "batch_size", "include_failed"})
MAX_BATCH = 10_000
DISCONNECT_POLL_SECONDS = 0.5
# The streamed export's query parameters (the dataset is in the path).
STREAM_PARAMS = FIELDS - {"dataset"}


async def export_params(repo: JobRepo, org_id: str, spec: dict[str, Any]) -> ExportParams:
    """Validates an export request against what the dataset really has. Only
    names found in the dataset and parsed dates reach the query."""
    unknown = sorted(set(spec) - FIELDS)
    if unknown:
        raise BadRequest(f"Unknown export options: {', '.join(unknown)}; use {', '.join(sorted(FIELDS))}.", parameter=unknown[0])
    name = dataset_param(spec.get("dataset"))
    include_failed = spec.get("include_failed", False)
    if not isinstance(include_failed, bool):
        raise BadRequest("include_failed must be true or false.", parameter="include_failed")
    states = WITH_FAILED if include_failed else COMMITTED
    # The export reads the imports finished by now (ExportParams.imports_as_of),
    # by the server's clock, which dates their finish too.
    as_of = await repo.server_now()
    dataset = await describe(repo, org_id, name, states, as_of)
    if dataset is None:
        raise NotFound(
            f"Your organisation has no dataset {name!r} with a completed import (exports read completed imports only).",
            parameter="dataset",
        )

    fields = spec.get("fields")
    if fields is None or fields == []:
        fields = dataset.columns
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise BadRequest("fields must be a list of column names.", parameter="fields")
    if len(fields) > MAX_COLUMNS:
        raise BadRequest(f"fields names {len(fields)} columns; at most {MAX_COLUMNS} are allowed.", parameter="fields")
    missing = [f for f in fields if f not in dataset.columns]
    if missing:
        raise BadRequest(
            f"Dataset {name!r} has no column {', '.join(map(repr, missing))}; it has {', '.join(map(repr, dataset.columns))}.",
            parameter="fields",
        )
    if len(set(fields)) != len(fields):
        raise BadRequest("fields names a column twice.", parameter="fields")

    date_field, bounds = spec.get("date_field"), {}
    if date_field is not None and not isinstance(date_field, str):
        raise BadRequest("date_field must be a column name.", parameter="date_field")
    date_field = date_field or None
    for key in ("from", "to"):
        raw = spec.get(key)
        if raw in (None, ""):
            continue
        if not isinstance(raw, str):
            raise BadRequest(f"{key} must be an ISO 8601 date or datetime string.", parameter=key)
        try:
            bounds[key] = parse_datetime(raw, clamp=True)
        except ValueError as exc:
            raise BadRequest(f"{key}: {raw[:40]!r} is {exc}.", parameter=key) from None
    if bounds and not date_field:
        raise BadRequest("from and to need a date_field to compare with.", parameter="date_field")
    if date_field:
        if date_field not in dataset.columns:
            raise BadRequest(f"Dataset {name!r} has no column {date_field!r}.", parameter="date_field")
        if dataset.types.get(date_field) != "date":
            raise BadRequest(
                f"Column {date_field!r} was not imported as a date; import it with types={date_field}:date.",
                parameter="date_field",
            )
    if "from" in bounds and "to" in bounds and bounds["from"] > bounds["to"]:
        raise BadRequest("from is after to (from is inclusive, to exclusive).", parameter="from")
    batch_size = spec.get("batch_size", EXPORT_BATCH)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH:
        raise BadRequest(f"batch_size must be an integer from 1 to {MAX_BATCH}.", parameter="batch_size")
    neutralize = spec.get("neutralize_formulas", True)
    if not isinstance(neutralize, bool):
        raise BadRequest("neutralize_formulas must be true or false.", parameter="neutralize_formulas")
    return ExportParams(
        dataset=name,
        date_field=date_field,
        from_=bounds["from"].isoformat() if "from" in bounds else None,
        to=bounds["to"].isoformat() if "to" in bounds else None,
        columns=fields,
        types={c: dataset.types[c] for c in fields if c in dataset.types},
        neutralize=neutralize,
        batch_size=batch_size,
        row_bytes=dataset.row_bytes,
        imports=dataset.imports,
        imports_as_of=as_of.isoformat(),
        imports_digest=dataset.digest,
        include_failed=include_failed,
        # Without a date filter the dataset's size is already known from its
        # imports; only a filtered export has to count.
        expected_rows=None if bounds else dataset.rows,
        filename=f"{name}.csv",
    )


@requires(Role.OPERATOR)
@idempotent(json_body_digest, replay_job)
async def create_export(request: web.Request, claim: Claim) -> web.Response:
    """202 with the export job, queued. With dry_run=true: 200 and a preview
    (rows in range, the first rows, estimates of size and time; see
    export_preview.py), and nothing is created."""
    query = query_params(request, ("dry_run",))
    spec = await json_object(request)
    org_id = org_of(request)
    manager = request.app[MANAGER_KEY]
    if bool_param(query, "dry_run", False):
        params = await export_params(manager.repo, org_id, spec)
        imports = await import_ids(manager.repo, org_id, params.dataset, params.import_states, params.as_of())
        total = params.expected_rows or await manager.repo.inserted(org_id, imports)
        body = await preview(request.app[DB_KEY].records, manager.repo, org_id, params, imports, total)
        return json_response(body)
    async with manager.queue_slot(org_id, claim.resource_id):
        params = dataclasses.replace(await export_params(manager.repo, org_id, spec), file_id=str(ObjectId()))
        await claim.bind(json_digest(spec))
        job = await manager.create(
            {
                "_id": claim.resource_id,
                "org_id": org_id,
                "kind": "export",
                "created_by": caller(request).who(),
                "params": params.to_doc(),
            },
            progress={"processed": 0, "total": None, "bytes": 0, "percent": 0.0},
        )
    await audit.record(request, "job.create", job_id=job["_id"], state_after=job["state"])
    return job_response(job, status=202)


def stream_spec(dataset: str, query: Any) -> dict[str, Any]:
    """An export request written as query parameters (fields comma-separated)."""
    spec: dict[str, Any] = {"dataset": dataset}
    for key in ("date_field", "from", "to"):
        if query.get(key):
            spec[key] = query[key]
    if query.get("fields"):
        spec["fields"] = [f.strip() for f in query["fields"].split(",") if f.strip()]
    if "batch_size" in query:
        spec["batch_size"] = int_param(query, "batch_size", EXPORT_BATCH, 1, MAX_BATCH)
    for name in ("neutralize_formulas", "include_failed"):
        if name in query:
            spec[name] = bool_param(query, name, name == "neutralize_formulas")
    return spec


@requires(Role.OPERATOR)
@raw_body  # it takes none, and refuses one itself
async def post_stream_export(request: web.Request) -> web.StreamResponse:
    """POST /exports/{dataset}.csv: the export streamed into this response
    (``curl -X POST ... -o out.csv``). A POST, so no prefetch, crawler or
    replayed link can start one; browsers use a download ticket."""
    query = query_params(request, STREAM_PARAMS)
    if request.headers.get("Idempotency-Key") is not None:
        raise BadRequest(
            "A streamed export cannot be replayed: each POST streams anew. For a retryable download, "
            "create a ticket with POST /api/v1/downloads (which honours Idempotency-Key).",
            parameter="Idempotency-Key",
        )
    if await request.content.read(1):
        raise BadRequest("This endpoint takes no body; give the export's options as query parameters.")
    org_id = org_of(request)
    params = await export_params(request.app[MANAGER_KEY].repo, org_id, stream_spec(request.match_info["dataset"], query))
    return await stream_export(request, org_id, params)


async def stream_export(request: web.Request, org_id: str, params: ExportParams) -> web.StreamResponse:
    """The export streamed into the response as it is read: the download starts at
    once. It is a job (X-Job-Id): pause stalls the stream, terminate aborts it so
    the browser shows a failed download, and a client that leaves terminates it."""
    params = dataclasses.replace(params, stream=True)
    job_id = new_job_id()
    manager = request.app[MANAGER_KEY]
    async with manager.stream_slot(org_id, job_id):
        return await _stream(request, org_id, job_id, params)


async def _stream(request: web.Request, org_id: str, job_id: str, params: ExportParams) -> web.StreamResponse:
    manager = request.app[MANAGER_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{params.filename}"',
            "X-Job-Id": job_id,
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    runner = await manager.start_attached(
        {"_id": job_id, "org_id": org_id, "kind": "export", "created_by": caller(request).who(), "params": params.to_doc()},
        {"processed": 0, "total": None, "bytes": 0, "percent": 0.0},
        ResponseSink(response, manager.settings.stream_idle_seconds),
    )
    assert runner.task is not None
    # While the job is paused nothing is written, so a client that leaves is
    # noticed by watching the connection. aiohttp may instead cancel the handler
    # when its client leaves (handler_cancellation, on in its test server): the
    # job is terminated then too, or it would stay paused with nobody to resume it.
    try:
        await asyncio.shield(audit.record(request, "job.create", job_id=job_id, state_after=JobState.RUNNING.value))
        while not runner.task.done():
            await asyncio.wait([runner.task], timeout=DISCONNECT_POLL_SECONDS)
            transport = request.transport
            if not runner.task.done() and (transport is None or transport.is_closing()):
                await _client_left(manager, org_id, job_id)
    except BaseException:
        if not runner.task.done():
            await asyncio.shield(_client_left(manager, org_id, job_id))
        raise
    job = await manager.repo.get(org_id, job_id)
    if job["state"] != JobState.COMPLETED.value:
        # Never end a chunked body cleanly for an export that did not finish:
        # closing the connection mid-body makes the browser report a failure.
        # (aiohttp will not write the final chunk to a closing transport.)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def _client_left(manager: Any, org_id: str, job_id: str) -> None:
    try:
        await manager.control(org_id, job_id, "terminate")
    except InvalidTransition:
        pass  # it ended meanwhile


async def export_result(request: web.Request) -> web.StreamResponse:
    """The stored CSV of a completed export: Content-Length, and single byte
    ranges so a broken download can continue (curl -C -, browsers)."""
    query_params(request, ())
    job = await request.app[MANAGER_KEY].repo.get(org_of(request), request.match_info["job_id"])
    return await send_result(request, job)


def if_range_holds(request: web.Request, etag: str) -> bool:
    """Whether a Range may be served (RFC 9110 13.1.5): no If-Range, or one that
    names this file's strong ETag. A date never matches: the service sends no
    Last-Modified, so a date-validated resume gets the whole file."""
    validator = request.headers.get("If-Range")
    return validator is None or validator.strip() == etag


def check_result(job: dict[str, Any]) -> None:
    """Whether a job has a stored result to download: 404, 410 or 409 if not."""
    if job["kind"] != "export" or ExportParams.from_doc(job["params"]).stream:
        raise NotFound("Only background export jobs have a stored result.")
    if job["state"] == JobState.TERMINATED.value:
        raise Gone("This export was terminated and its file deleted.")
    if job["state"] != JobState.COMPLETED.value:
        raise InvalidTransition(f"The export is {job['state']}; its result is ready once it is completed.", state=job["state"])


async def send_result(request: web.Request, job: dict[str, Any]) -> web.StreamResponse:
    """The stored result, whole or a single byte range. Its ETag is the file's
    id (the attempt that completed the export), so a client resuming a broken
    download with ``If-Range`` gets the rest of the same file, or, if it holds
    the start of another one, the whole file with 200."""
    check_result(job)
    db = request.app[DB_KEY]
    file_id = result_file_id(job)
    file_doc = await db.exports.file(file_id)
    if file_doc is None:
        raise Gone("The export's file no longer exists.")
    length = file_doc["length"]
    etag = f'"{file_id}"'
    start, end, status = 0, length, 200
    wanted = byte_range(request.headers.get("Range"), length) if if_range_holds(request, etag) else None
    if wanted is not None:
        (start, end), status = wanted, 206
    response = web.StreamResponse(
        status=status,
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{ExportParams.from_doc(job["params"]).filename}"',
            "Accept-Ranges": "bytes",
            "ETag": etag,
        },
    )
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{length}"
    response.content_length = end - start
    await response.prepare(request)
    reader = ChunkReader(db.exports.chunks, file_doc, start, end)
    try:
        while data := await reader.read(DOWNLOAD_CHUNK):
            await response.write(data)
    finally:
        await reader.close()
    await response.write_eof()
    return response
