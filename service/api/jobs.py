"""Reading jobs and controlling them: GET /jobs, GET /jobs/{id}, POST /jobs/{id}/{action},
POST /jobs/{id}/undo. (GET /jobs/{id}/events is in events.py; many jobs at once in bulk.py.)"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from .. import audit
from ..auth.identity import Role, requires
from ..errors import BadRequest
from ..jobs import undo
from ..jobs.kinds import KINDS as JOB_KINDS
from ..jobs.model import ACTIONS, JobState, job_json
from ..jobs.queue import explain as explain_queue
from ..retention import delete_job as delete_finished_job
from ..typedefs import DB_KEY, MANAGER_KEY
from .common import bool_param, int_param, job_response, json_object, json_response, list_param, org_of, query_params

STATES = frozenset(s.value for s in JobState)
KINDS = frozenset(JOB_KINDS)


async def list_jobs(request: web.Request) -> web.Response:
    """Newest first; ``state`` and ``kind`` filter (repeat or comma-separate them);
    ``limit`` (1-500, default 50) and ``before`` (a job id) page through."""
    manager = request.app[MANAGER_KEY]
    query = query_params(request, ("state", "kind", "limit", "before"), repeatable=("state", "kind"))
    states = list_param(query, "state", STATES)
    kinds = list_param(query, "kind", KINDS)
    limit = int_param(query, "limit", 50, 1, 500)
    before = query.get("before") or None
    docs = await manager.repo.page(org_of(request), states=states, kinds=kinds, limit=limit, before=before)
    await explain_queue(manager.repo, manager.kinds, manager.settings, docs)
    next_link = None
    if len(docs) == limit:
        params = [("state", s) for s in states] + [("kind", k) for k in kinds]
        params += [("limit", str(limit)), ("before", docs[-1]["_id"])]
        next_link = f"{request.path}?{urlencode(params)}"
    return json_response({"jobs": [job_json(d) for d in docs], "next": next_link})


async def get_job(request: web.Request) -> web.Response:
    """The job, who created it, and its history (the audit events of the job)."""
    query_params(request, ())
    org_id = org_of(request)
    manager = request.app[MANAGER_KEY]
    doc = await manager.repo.get(org_id, request.match_info["job_id"])
    await explain_queue(manager.repo, manager.kinds, manager.settings, [doc])
    body = job_json(doc)
    body["created_by"] = doc.get("created_by")
    body["history"] = await audit.history(request.app[DB_KEY], org_id, doc["_id"])
    return json_response(body)


def control_reason(body: dict) -> str | None:
    """The optional ``{"reason": "..."}`` of a control request, kept in the audit trail."""
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise BadRequest(f"Unknown fields: {', '.join(unknown)}; a control request may carry only a reason.")
    reason = body.get("reason")
    if "reason" in body and (not isinstance(reason, str) or len(reason) > audit.MAX_REASON):
        raise BadRequest(f"reason must be a string of at most {audit.MAX_REASON} characters.", parameter="reason")
    return reason or None


@requires(Role.OPERATOR)
async def control_job(request: web.Request) -> web.Response:
    """pause, resume, terminate or retry: 200 with the job (also when the request
    had already taken effect: a retry after a lost response), 409 with its state
    when the action cannot apply to it, 404 for an unknown job. The body may be
    empty or ``{"reason": "..."}``; an action that changed the job is appended
    to the audit trail with the states before and after and the reason."""
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    query_params(request, ())
    reason = control_reason(await json_object(request, allow_empty=True))
    job_id = request.match_info["job_id"]
    result = await request.app[MANAGER_KEY].control(org_of(request), job_id, action)
    if result.changed:  # a request already satisfied records nothing new
        await audit.record(
            request, f"job.{action}", job_id=job_id, state_before=result.before, state_after=result.job["state"], reason=reason
        )
    return job_response(result.job)


@requires(Role.OPERATOR)
async def delete_job(request: web.Request) -> web.Response:
    """Deletes a finished job and its result file at once: 204; 409 (with its
    state) for a job that is not finished or must be kept (see retention.py);
    404 for an unknown job."""
    doc = await request.app[MANAGER_KEY].repo.get(org_of(request), request.match_info["job_id"])
    await delete_finished_job(request.app[DB_KEY], request.app[MANAGER_KEY].repo, doc)
    await audit.record(request, "job.delete", job_id=doc["_id"], state_before=doc["state"], state_after=None)
    return web.Response(status=204)


@requires(Role.OPERATOR)
async def undo_job(request: web.Request) -> web.Response:
    """Undo a completed import or teams job: 200 with the job, now ``undoing``;
    its rollback (the terminate's: resumable, fenced, with progress) runs on
    any replica and ends ``undone``. A repeated request answers 200 and changes
    nothing; 409 naming the reason for another kind, another state, or a job
    past its undo window (JOB_UNDO_DAYS). With ``dry_run=true``: 200 and what
    an undo would remove or restore, counted now, and nothing is written.
    The body may be empty or ``{"reason": "..."}`` (kept in the audit trail)."""
    query = query_params(request, ("dry_run",))
    dry_run = bool_param(query, "dry_run", False)
    reason = control_reason(await json_object(request, allow_empty=True))
    manager = request.app[MANAGER_KEY]
    org_id = org_of(request)
    job = await manager.repo.get(org_id, request.match_info["job_id"])
    if dry_run:
        body = await undo.preview(request.app[DB_KEY], manager.repo, manager.kinds, job, manager.settings.job_undo_days)
        return json_response(body)
    result = await undo.request(manager, org_id, job)
    if result.changed:
        await audit.record(
            request, "job.undo", job_id=job["_id"], state_before=result.before, state_after=result.job["state"], reason=reason
        )
    return job_response(result.job)
