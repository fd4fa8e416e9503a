"""Idempotency-Key on the POSTs that create something (jobs, download tickets).

A pipeline whose response was lost retries with the same key and gets the
same job, not a second one. The key is claimed before anything is read or
written, in one insert on ``idempotency_keys`` whose ``_id`` is (org, key):
on MongoDB the unique ``_id`` index decides which of two concurrent requests
owns the key, and the other is told to retry (409) or shown the winner's job.

"The same request" is the method, path and query (as sorted pairs) plus a
SHA-256 of the payload: of the CSV file for uploads (the file part of a
multipart body, so a retry with a new multipart boundary still matches) and
of the canonical JSON (sorted keys) for JSON bodies. An upload's digest is
only known once it has streamed, so a retry of a finished upload is read and
hashed but never stored again. Records expire after 24 hours (TTL index).

A request holding a claim refreshes its ``heartbeat_at`` every HEARTBEAT while
it runs (an upload may stream for an hour), so a claim is abandoned only when
its heartbeat stops: its replica died or the request ended without creating
anything. Each holder writes its own ``holder`` token, so one whose claim was
taken over cannot keep the new holder's claim alive or free it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from ..background import end_if_cancelled, stop
from ..errors import BadRequest, JobNotFound, ServiceError
from ..jobs.model import new_job_id, utcnow
from ..typedefs import DB_KEY, MANAGER_KEY
from .common import job_response, org_of

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")
TTL = dt.timedelta(hours=24)
log = logging.getLogger(__name__)
# How often a request refreshes its claim while it runs.
HEARTBEAT = dt.timedelta(minutes=1)
# A claim whose heartbeat is older than this never got its resource (its
# replica died mid-upload) and is taken over; a claim whose payload was
# digested but whose resource is missing failed at the very end and is taken
# over sooner.
STALE_CLAIM = dt.timedelta(minutes=3)
STALE_BOUND_CLAIM = dt.timedelta(seconds=30)


class KeyReused(ServiceError):
    """This Idempotency-Key was already used for a different request."""

    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key reused"


class KeyInProgress(ServiceError):
    """A request with this Idempotency-Key is still being processed; retry shortly."""

    status, slug, title = 409, "idempotency-key-in-progress", "Request in progress"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = "1"


def json_digest(body: Any) -> str:
    """The digest of a JSON payload, independent of key order and spacing."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def json_body_digest(request: web.Request) -> str:
    try:
        return json_digest(await request.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        # Not JSON: the handler answers 400 for it; hash the bytes meanwhile.
        return hashlib.sha256(await request.read()).hexdigest()


async def replay_job(request: web.Request, job_id: str) -> web.Response | None:
    """The job a request with the same key created, answered as the first time."""
    try:
        doc = await request.app[MANAGER_KEY].repo.get(org_of(request), job_id)
    except JobNotFound:
        return None
    return job_response(doc, status=202)


class Claim:
    """The caller's hold on an Idempotency-Key (or a stand-in when no key was
    sent). ``resource_id`` is the id the handler must give what it creates;
    ``bind`` records the payload's digest just before the creating write."""

    def __init__(self, request: web.Request, record: dict[str, Any] | None, resource_id: str) -> None:
        self._request = request
        self._record = record
        self.resource_id = resource_id
        self.bound = False

    async def bind(self, digest: str) -> None:
        if self._record is not None:
            await self._request.app[DB_KEY].idempotency_keys.update_one(
                {"_id": self._record["_id"], "holder": self._record["holder"]},
                {"$set": {"digest": digest, "bound_at": utcnow()}},
            )
        self.bound = True

    async def release(self) -> None:
        """Frees the key after a request that created nothing (a 4xx, a dry run)."""
        if self._record is not None and not self.bound:
            await self._request.app[DB_KEY].idempotency_keys.delete_one(
                {"_id": self._record["_id"], "holder": self._record["holder"]}
            )

    async def heartbeat(self) -> None:
        """Keeps the claim alive until cancelled (see the module docstring)."""
        if self._record is None:
            return
        keys = self._request.app[DB_KEY].idempotency_keys
        mine = {"_id": self._record["_id"], "holder": self._record["holder"]}
        while True:
            await asyncio.sleep(HEARTBEAT.total_seconds())
            end_if_cancelled()
            try:
                await keys.update_one(mine, {"$set": {"heartbeat_at": utcnow()}})
            except Exception as exc:  # an outage: the next beat tries again
                log.warning("idempotency claim heartbeat failed: %s", exc)
            end_if_cancelled()


Replay = Callable[[web.Request, str], Awaitable[web.Response | None]]
Digest = Callable[[web.Request], Awaitable[str]]
Handler = Callable[[web.Request, Claim], Awaitable[web.StreamResponse]]


def idempotent(
    digest: Digest, replay: Replay, new_id: Callable[[], str] = new_job_id
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wraps a creating handler. ``digest(request)`` hashes a retried request's
    payload (read, never stored); ``replay(request, resource_id)`` answers
    with the resource created the first time, or None if it does not exist;
    ``new_id()`` makes the id the handler gives what it creates."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            key = request.headers.get(HEADER)
            if key is None:
                return await handler(request, Claim(request, None, new_id()))
            if not KEY_RE.fullmatch(key):
                raise BadRequest(f"{HEADER} must be 1-255 visible ASCII characters.", parameter=HEADER)
            claim = await _claim(request, key, digest, replay, new_id)
            if isinstance(claim, web.Response):
                return claim
            beat = asyncio.create_task(claim.heartbeat(), name="idempotency-heartbeat")
            try:
                response = await handler(request, claim)
            except BaseException:
                await stop(beat)
                await claim.release()
                raise
            await stop(beat)
            await claim.release()  # only if nothing was created
            return response

        return wrapped

    return wrap


def _request_form(request: web.Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        # A string, not pairs: FerretDB stores no nested arrays.
        "query": urlencode(sorted(request.query.items())),
    }


async def _claim(
    request: web.Request, key: str, digest: Digest, replay: Replay, new_id: Callable[[], str]
) -> Claim | web.Response:
    db = request.app[DB_KEY]
    collection = db.idempotency_keys
    org_id = org_of(request)
    form = _request_form(request)
    now = utcnow()
    await db.expire(collection, "created_at", now - TTL)
    record = {
        "_id": f"{org_id}/{key}",
        "org_id": org_id,
        "key": key,
        **form,
        "resource_id": new_id(),
        "holder": str(ObjectId()),
        "digest": None,
        "created_at": now,
        "heartbeat_at": now,
        "bound_at": None,
    }
    try:
        await collection.insert_one(record)
        return Claim(request, record, record["resource_id"])
    except DuplicateKeyError:
        pass
    existing = await collection.find_one({"_id": record["_id"], "org_id": org_id})
    if existing is None:  # released in between: claim it afresh
        return await _claim(request, key, digest, replay, new_id)
    if _age(existing["created_at"], now) > TTL:
        # Expired, but not yet removed by the TTL monitor: the key is free.
        taken = await collection.replace_one({"_id": existing["_id"], "created_at": existing["created_at"]}, record)
        if taken.modified_count == 1:
            return Claim(request, record, record["resource_id"])
        raise KeyInProgress()
    if {k: existing.get(k) for k in form} != form:
        raise KeyReused(
            f"{HEADER} {key!r} was used for {existing['method']} {existing['path']} with other parameters; "
            "use a new key for a new request."
        )
    found = await replay(request, existing["resource_id"])
    if found is not None and existing.get("digest") is not None:
        if await digest(request) != existing["digest"]:
            raise KeyReused(f"{HEADER} {key!r} was used for a request with a different body; use a new key for a new request.")
        found.headers[REPLAYED] = "true"
        return found
    bound_at, created_at = existing.get("bound_at"), existing["created_at"]
    # A claim written before heartbeats existed has only its creation time.
    alive_at = existing.get("heartbeat_at") or created_at
    stale = (bound_at is not None and _age(bound_at, now) > STALE_BOUND_CLAIM) or _age(alive_at, now) > STALE_CLAIM
    if found is None and stale:
        # Take the abandoned claim over, keeping its resource id, guarded so
        # that only one of several retries does.
        holder = str(ObjectId())
        taken = await collection.update_one(
            {"_id": existing["_id"], "created_at": created_at, "resource_id": existing["resource_id"]},
            {"$set": {"created_at": now, "heartbeat_at": now, "holder": holder, "digest": None, "bound_at": None}},
        )
        if taken.modified_count == 1:
            return Claim(request, {**existing, "created_at": now, "holder": holder}, existing["resource_id"])
    raise KeyInProgress()


def _age(when: dt.datetime, now: dt.datetime) -> dt.timedelta:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return now - when
