"""Download tickets: how a browser downloads an export without a GET that
starts work on its own.

``POST /downloads`` (authenticated like every other call) checks the request
and stores a ticket: a random token, the caller's org and actor, what to
download, and an expiry a few minutes away. ``GET /downloads/{ticket}`` needs
no bearer header (a plain link or ``window.location`` cannot send one; the
ticket is the credential); it marks the ticket used in one guarded write and
streams the export, or the stored result of a finished export. A second GET
of the same ticket, an expired one or a forged one streams nothing (410/404),
so a prefetch, a crawler or a replayed link never starts an export. The one
exception starts nothing either: a result ticket's download that broke off
resumes with a ``Range`` GET of the same ticket until it expires (with
``If-Range``, as browsers send it). Any replica can serve a ticket: it lives
in the database.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from aiohttp import web

from ..auth.identity import IDENTITY_KEY, Identity, Role, caller, check_role, public
from ..errors import BadRequest, Gone, JobNotFound, NotFound
from ..jobs.model import utcnow
from ..jobs.params import ExportParams
from ..typedefs import DB_KEY, MANAGER_KEY
from .common import json_object, json_response, org_of, query_params
from .exports import check_result, export_params, send_result, stream_export
from .idempotency import Claim, idempotent, json_body_digest, json_digest

TICKET_SECONDS = 300
ROUTE = "/api/v1/downloads"


def new_ticket() -> str:
    """256 random bits, URL-safe: the ticket is the only credential of its GET."""
    return secrets.token_urlsafe(32)


def ticket_json(doc: dict[str, Any]) -> dict[str, Any]:
    body = {
        "url": f"{ROUTE}/{doc['_id']}",
        "kind": doc["kind"],
        "filename": doc["filename"],
        "expires_at": doc["expires_at"].astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if doc["kind"] == "result":
        body["job_id"] = doc["job_id"]
    return body


def ticket_response(doc: dict[str, Any]) -> web.Response:
    body = ticket_json(doc)
    return json_response(body, status=201, headers={"Location": body["url"], "Cache-Control": "no-store"})


async def replay_ticket(request: web.Request, ticket: str) -> web.Response | None:
    doc = await request.app[DB_KEY].download_tickets.find_one({"_id": ticket, "org_id": org_of(request)})
    return None if doc is None else ticket_response(doc)


@idempotent(json_body_digest, replay_ticket, new_id=new_ticket)
async def create_download(request: web.Request, claim: Claim) -> web.Response:
    """201 + ``{url, kind, filename, expires_at}``: ``{"export": {...}}`` (the
    fields of POST /jobs/export) for a streamed export (operator), or
    ``{"job_id": id}`` for the stored result of a completed background export
    (any role)."""
    query_params(request, ())
    spec = await json_object(request)
    org_id = org_of(request)
    unknown = sorted(set(spec) - {"export", "job_id"})
    if unknown or len(spec) != 1:
        extra = {"parameter": unknown[0]} if unknown else {}
        raise BadRequest(
            'Send either {"export": {...export options...}} or {"job_id": "<a completed export job>"}'
            + (f"; unknown: {', '.join(unknown)}." if unknown else "."),
            **extra,
        )
    ticket: dict[str, Any] = {"_id": claim.resource_id, "org_id": org_id, "actor": caller(request).as_json()}
    if "export" in spec:
        # A ticket for a new export starts work when redeemed: an operator's
        # right, like every other way of starting a job. A completed result is
        # a viewer's to download.
        check_role(request, Role.OPERATOR)
        if not isinstance(spec["export"], dict):
            raise BadRequest("export must be an object with the export's options.", parameter="export")
        params = await export_params(request.app[MANAGER_KEY].repo, org_id, spec["export"])
        ticket.update(kind="export", spec=spec["export"], filename=params.filename)
    else:
        job_id = spec["job_id"]
        if not isinstance(job_id, str) or not job_id:
            raise BadRequest("job_id must be the id of a completed export job.", parameter="job_id")
        job = await request.app[MANAGER_KEY].repo.get(org_id, job_id)
        check_result(job)
        ticket.update(kind="result", job_id=job_id, filename=ExportParams.from_doc(job["params"]).filename)
    now = utcnow()
    await request.app[DB_KEY].expire(request.app[DB_KEY].download_tickets, "expires_at", now)
    ticket.update(created_at=now, expires_at=now + dt.timedelta(seconds=TICKET_SECONDS), used_at=None)
    await claim.bind(json_digest(spec))
    await request.app[DB_KEY].download_tickets.insert_one(ticket)
    return ticket_response(ticket)


@public("authorised by its own single-use, short-lived ticket, which a POST with a bearer token created")
async def download(request: web.Request) -> web.StreamResponse:
    """Redeems a ticket once: the export streams (or the stored result is sent).
    The ticket, not a bearer header, says whose data this is."""
    query_params(request, ())
    tickets = request.app[DB_KEY].download_tickets
    token = request.match_info["ticket"]
    now = utcnow()
    doc = await tickets.find_one_and_update(
        {"_id": token, "used_at": None, "expires_at": {"$gt": now}}, {"$set": {"used_at": now}}
    )
    if doc is None and "Range" in request.headers:
        # A broken download of a stored result resumes on its own ticket, while
        # it lasts: a ranged GET sends part of a finished file and starts nothing.
        doc = await tickets.find_one({"_id": token, "kind": "result", "used_at": {"$ne": None}, "expires_at": {"$gt": now}})
    if doc is None:
        if await tickets.find_one({"_id": token}) is None:
            raise NotFound("No such download ticket.")
        raise Gone("This download ticket was already used or has expired; create a new one with POST /api/v1/downloads.")
    org_id = doc["org_id"]
    # The caller is whoever created the ticket (for the job's created_by and audit).
    who = doc.get("actor") or {}
    request[IDENTITY_KEY] = Identity(
        org_id=org_id,
        actor=who.get("actor", "unknown"),
        actor_name=who.get("actor_name", ""),
        role=Role.VIEWER,
        method="ticket",
        support=bool(who.get("support")),
        home_org=who.get("home_org"),
    )
    if doc["kind"] == "export":
        return await stream_export(request, org_id, await export_params(request.app[MANAGER_KEY].repo, org_id, doc["spec"]))
    try:
        job = await request.app[MANAGER_KEY].repo.get(org_id, doc["job_id"])
    except JobNotFound:
        raise Gone("The export this ticket was for no longer exists.") from None
    return await send_result(request, job)
