"""Reading jobs and controlling them: GET /jobs, GET /jobs/{id}, POST /jobs/{id}/{action}."""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

from aiohttp import web

from ..jobs.kinds import KINDS as JOB_KINDS
from ..jobs.model import ACTIONS, FINAL, JobState, job_json
from ..typedefs import MANAGER_KEY
from .common import int_param, job_response, json_response, list_param, org_of

KEEP_ALIVE_SECONDS = 15.0

STATES = frozenset(s.value for s in JobState)
KINDS = frozenset(JOB_KINDS)


async def list_jobs(request: web.Request) -> web.Response:
    """Newest first; ``state`` and ``kind`` filter (repeat or comma-separate them);
    ``limit`` (1-500, default 50) and ``before`` (a job id) page through."""
    manager = request.app[MANAGER_KEY]
    query = request.query
    states = list_param(query, "state", STATES)
    kinds = list_param(query, "kind", KINDS)
    limit = int_param(query, "limit", 50, 1, 500)
    before = query.get("before") or None
    docs = await manager.repo.list(org_of(request), states=states, kinds=kinds, limit=limit, before=before)
    next_link = None
    if len(docs) == limit:
        params = [("state", s) for s in states] + [("kind", k) for k in kinds]
        params += [("limit", str(limit)), ("before", docs[-1]["_id"])]
        next_link = f"{request.path}?{urlencode(params)}"
    return json_response({"jobs": [job_json(d) for d in docs], "next": next_link})


async def get_job(request: web.Request) -> web.Response:
    doc = await request.app[MANAGER_KEY].repo.get(org_of(request), request.match_info["job_id"])
    return job_response(doc)


async def control_job(request: web.Request) -> web.Response:
    """pause, resume, terminate or retry: 200 with the job (also when the request
    had already taken effect: a retry after a lost response), 409 with its state
    when the action cannot apply to it, 404 for an unknown job."""
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    result = await request.app[MANAGER_KEY].control(org_of(request), request.match_info["job_id"], action)
    return job_response(result.job)


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``event: job`` with the job's JSON whenever it changes
    (checked every ``interval_ms``, default 500), then ``event: end`` once the
    job is completed, terminated or failed. A comment line every 15 s keeps
    proxies from closing a quiet stream (a paused job)."""
    repo = request.app[MANAGER_KEY].repo
    org_id, job_id = org_of(request), request.match_info["job_id"]
    interval = int_param(request.query, "interval_ms", 500, 50, 60_000) / 1000
    doc = await repo.get(org_id, job_id)  # a 404 before the stream starts
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    last, sent, quiet_since = None, 0, time.monotonic()
    while True:
        body = job_json(doc)
        if body != last:
            sent += 1
            await response.write(f"id: {sent}\nevent: job\ndata: {json.dumps(body, default=str)}\n\n".encode())
            last, quiet_since = body, time.monotonic()
        elif time.monotonic() - quiet_since >= KEEP_ALIVE_SECONDS:
            await response.write(b": keep-alive\n\n")
            quiet_since = time.monotonic()
        if JobState(doc["state"]) in FINAL or doc["state"] == JobState.FAILED.value:
            await response.write(f"event: end\ndata: {json.dumps({'state': doc['state']})}\n\n".encode())
            break
        await asyncio.sleep(interval)
        doc = await repo.get(org_id, job_id)
    await response.write_eof()
    return response
