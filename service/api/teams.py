"""POST /api/v1/jobs/teams: queue a bulk team creation, or review the sheet
(dry_run=true) without writing anything."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import audit
from ..auth.identity import Role, caller, requires
from ..csvio.records import RecordReader
from ..csvio.schema import Header
from ..errors import BadRequest, InvalidCsv
from ..jobs.params import TeamsParams
from ..teams.batch import check_batch
from ..teams.review import TRACKED_ROWS, Review
from ..teams.rows import RowError, RowParser, TeamRow, column_layout, parse_batch, supported_region
from ..typedefs import DB_KEY, MANAGER_KEY, SETTINGS_KEY
from .common import bool_param, error_policy, int_param, job_response, json_response, org_of, query_params, raw_body
from .idempotency import Claim, idempotent, replay_job
from .imports import StreamedBody, csv_body, receive_csv, upload_digest

MAX_BATCH = 1000
# Rows per batch of a teams job unless the request says otherwise.
TEAMS_BATCH = 100
DRY_RUN_BATCH = 500
TEAMS_PARAMS = ("dry_run", "region", "batch_size", "on_error", "max_errors")


def _region(query: Any, default: str) -> str:
    try:
        return supported_region(query.get("region") or default)
    except ValueError as exc:
        raise BadRequest(f"region: {exc}", parameter="region") from None


@requires(Role.OPERATOR)
@idempotent(upload_digest, replay_job)
@raw_body  # a CSV, streamed into GridFS
async def create_teams(request: web.Request, claim: Claim) -> web.Response:
    """202 + job; or, with dry_run=true, 200 and what the job would do (a dry
    run creates nothing, so its Idempotency-Key is released again)."""
    settings, manager = request.app[SETTINGS_KEY], request.app[MANAGER_KEY]
    org_id = org_of(request)
    query = query_params(request, TEAMS_PARAMS)
    region = _region(query, settings.default_phone_region)
    # Every parameter is checked, a dry run's too: a typo is an error, not ignored.
    batch_size = int_param(query, "batch_size", TEAMS_BATCH, 1, MAX_BATCH)
    on_error, max_errors = error_policy(query)
    if bool_param(query, "dry_run", False):
        return await dry_run(request, org_id, region)

    job_id = claim.resource_id
    layout: dict[str, int] = {}

    def check(header: Header) -> None:
        layout.update(column_layout(header.names))

    async with manager.queue_slot(org_id, job_id):
        upload = await receive_csv(request, {"org_id": org_id, "job_id": job_id, "kind": "teams"}, check)
        await claim.bind(upload.sha256)
        job = await manager.create(
            {
                "_id": job_id,
                "org_id": org_id,
                "kind": "teams",
                "created_by": caller(request).who(),
                "params": TeamsParams(
                    **upload.params(),
                    layout=layout,
                    width=len(upload.header.names),
                    region=region,
                    created_list=True,
                    batch_size=batch_size,
                    on_error=on_error,
                    max_errors=max_errors,
                ).to_doc(),
            },
            progress={
                "processed": 0,
                "total": upload.rows,
                "teams_created": 0,
                "users_created": 0,
                "users_updated": 0,
                "failed": 0,
                "percent": 0.0,
            },
        )
    await audit.record(request, "job.create", job_id=job_id, state_after=job["state"])
    return job_response(job, status=202)


async def dry_run(request: web.Request, org_id: str, region: str) -> web.Response:
    """Reads the whole sheet once, checks every row against the database, writes nothing."""
    settings, db = request.app[SETTINGS_KEY], request.app[DB_KEY]
    chunks, _ = await csv_body(request, settings.max_upload_bytes)
    body = StreamedBody(chunks, settings.max_upload_bytes)
    header = await body.header()
    layout = column_layout(header.names)
    parser = RowParser(layout, len(header.names), region)
    review = Review(org_id, layout)
    seen: dict[str, int] = {}
    async for records in RecordReader(body.read, header.data_start).batches(DRY_RUN_BATCH, settings.batch_max_bytes):
        parsed: list[TeamRow | RowError] = await parse_batch(parser, records)
        if len(seen) >= TRACKED_ROWS:
            seen = {}  # past the limit, repeated names are only caught within a batch
        _, rejected, users = await check_batch(db.teams, db.users, org_id, None, parsed, seen)
        review.add(parsed, rejected, users)
    if review.rows == 0:
        raise InvalidCsv("The file has a header but no data rows.")
    return json_response(review.result())
