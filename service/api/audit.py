"""GET /api/v1/audit: the org's audit events, newest first (admin)."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from bson import ObjectId
from bson.errors import InvalidId

from .. import audit
from ..auth.identity import Role, requires
from ..csvio.schema import parse_datetime
from ..errors import BadRequest
from ..typedefs import DB_KEY
from .common import int_param, json_response, org_of, query_params

FILTERS = ("job_id", "actor", "action")


@requires(Role.ADMIN)
async def list_events(request: web.Request) -> web.Response:
    """Filters: ``job_id``, ``actor`` (a JWT sub or ``key:<id>``), ``action``
    (job.create, job.pause, ...), ``since`` (ISO 8601); ``limit`` (1-500,
    default 100) and ``before`` (an event id, from ``next``) page on."""
    query = query_params(request, (*FILTERS, "since", "before", "limit"))
    filters = {name: query.get(name) or None for name in FILTERS}
    if filters["action"] is not None and filters["action"] not in audit.ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(audit.ACTIONS)}.", parameter="action")
    since = None
    if query.get("since"):
        try:
            since = parse_datetime(query["since"], clamp=True)
            if not 1970 <= since.year < 2106:  # what an event id (an ObjectId's seconds) can hold
                raise ValueError("out of range")
        except ValueError:
            raise BadRequest("since must be an ISO 8601 date or datetime from 1970 on.", parameter="since") from None
    before = None
    if query.get("before"):
        try:
            before = ObjectId(query["before"])
        except InvalidId:
            raise BadRequest("before must be an event id (from next).", parameter="before") from None
    limit = int_param(query, "limit", 100, 1, 500)
    events = await audit.search(request.app[DB_KEY], org_of(request), **filters, since=since, before=before, limit=limit)
    next_link = None
    if len(events) == limit:
        params = [(k, v) for k, v in query.items() if k not in ("before", "limit")]
        next_link = f"{request.path}?{urlencode([*params, ('limit', str(limit)), ('before', events[-1]['id'])])}"
    return json_response({"events": events, "next": next_link})
