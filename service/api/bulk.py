"""Many jobs at once: POST /api/v1/jobs/{action} (pause, resume, terminate).

The body names the jobs by a filter (kind, state, dataset, created_by,
created_after/created_before, ids); the action is applied to every matching
job of the caller's org, each through the same guarded transition as POST
/jobs/{id}/{action} (manager.control), so a bulk request races single
requests, other bulk requests and the runners exactly as they race each
other, on any replica, whichever replica owns the job. The answer counts the
jobs it changed, those already in the action's target, and those it refused
(by their state). At most ``limit`` (≤ 1,000) jobs are looked at per request,
oldest first; ``next`` is the continuation (send the same body with ``after``
set to it). A retry changes nothing more (already-satisfied jobs count as
``already``), and ``?dry_run=true`` counts without acting. One audit event
per request lists every job it changed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

from aiohttp import web
from bson import ObjectId

from .. import audit
from ..auth.identity import Role, requires
from ..csvio.schema import parse_datetime
from ..errors import BadRequest, InvalidTransition, JobNotFound
from ..jobs.kinds import KINDS
from ..jobs.states import BULK_ACTIONS, JobState
from ..typedefs import MANAGER_KEY
from .common import bool_param, dataset_param, json_object, json_response, org_of, query_params
from .jobs import control_reason

MAX_JOBS = 1000
IN_FLIGHT = 8  # transitions sent at once: each is one guarded write
FILTER_FIELDS = ("ids", "kind", "state", "dataset", "created_by", "created_after", "created_before")
JOB_ID_RE = "^[0-9a-f]{24}$"


def _strings(value: Any, name: str, choices: frozenset[str] | None = None, most: int = MAX_JOBS) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or not 0 < len(values) <= most:
        raise BadRequest(f"filter.{name} must be a string or a list of 1-{most} strings.", parameter=f"filter.{name}")
    if choices is not None:
        unknown = sorted(set(values) - choices)
        if unknown:
            raise BadRequest(
                f"filter.{name}: unknown {', '.join(unknown)}; one of {', '.join(sorted(choices))}.", parameter=f"filter.{name}"
            )
    return list(dict.fromkeys(values))


# How much older than its created_at a job's id may be (the id is made when
# the request starts; created_at once its upload is stored).
ID_LEAD = dt.timedelta(days=1)


def _when(value: Any, name: str) -> dt.datetime:
    try:
        when = parse_datetime(value, clamp=True) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise BadRequest(f"filter.{name} must be an ISO 8601 date or datetime.", parameter=f"filter.{name}")
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


# What an ObjectId's 4-byte timestamp can hold: a bound outside it is clamped
# (a filter "created after the year 420" bounds no id).
ID_FIRST = dt.datetime.fromtimestamp(0, dt.timezone.utc)
ID_LAST = dt.datetime.fromtimestamp(2**32 - 1, dt.timezone.utc)


def _id_at(when: dt.datetime) -> str:
    return str(ObjectId.from_datetime(min(max(when, ID_FIRST), ID_LAST)))


def job_filter(body: Any) -> dict[str, Any]:
    """The database filter of a bulk request's ``filter`` (the org is added by
    the repo). Creation times bound the _id too (ids are ObjectIds, made when
    the request began, at most ID_LEAD before the job's created_at), so the
    (org, _id) index serves every filter; created_at decides."""
    if not isinstance(body, dict):
        raise BadRequest("filter must be a JSON object (use {} for every job of your organisation).", parameter="filter")
    unknown = sorted(set(body) - set(FILTER_FIELDS))
    if unknown:
        raise BadRequest(f"Unknown filter fields: {', '.join(unknown)}; known: {', '.join(FILTER_FIELDS)}.", parameter="filter")
    where: dict[str, Any] = {}
    ids: dict[str, Any] = {}
    if "ids" in body:
        listed = _strings(body["ids"], "ids")
        if not all(len(i) == 24 and all(c in "0123456789abcdef" for c in i) for i in listed):
            raise BadRequest("filter.ids must be job ids (24 hex digits).", parameter="filter.ids")
        ids["$in"] = listed
    if "kind" in body:
        where["kind"] = {"$in": _strings(body["kind"], "kind", frozenset(KINDS))}
    if "state" in body:
        where["state"] = {"$in": _strings(body["state"], "state", frozenset(s.value for s in JobState))}
    if "dataset" in body:
        where["params.dataset"] = dataset_param(body["dataset"])
    if "created_by" in body:
        if not isinstance(body["created_by"], str) or not body["created_by"]:
            raise BadRequest("filter.created_by must be an actor (a JWT sub or key:<id>).", parameter="filter.created_by")
        where["created_by.actor"] = body["created_by"]
    created: dict[str, Any] = {}
    if "created_after" in body:
        after = _when(body["created_after"], "created_after")
        created["$gte"] = after
        # A job's id is made before its upload is read, so it may be older than
        # its created_at by the upload's length: the id bound leaves a day.
        ids["$gte"] = _id_at(after - ID_LEAD if after > ID_FIRST + ID_LEAD else ID_FIRST)
    if "created_before" in body:
        before = _when(body["created_before"], "created_before")
        created["$lt"] = before
        # Whole seconds in an ObjectId: the second of ``before`` is kept, created_at refines it.
        ids["$lt"] = _id_at(before + dt.timedelta(seconds=1) if before < ID_LAST else ID_LAST)
    if created:
        where["created_at"] = created
    if ids:
        where["_id"] = ids
    return where


def _request(body: dict[str, Any]) -> tuple[dict[str, Any], str | None, str | None, int]:
    """(database filter, reason, after, limit) of a bulk request's body."""
    unknown = sorted(set(body) - {"filter", "reason", "after", "limit"})
    if unknown:
        raise BadRequest(f"Unknown fields: {', '.join(unknown)}; a bulk request has filter, reason, after and limit.")
    if "filter" not in body:
        raise BadRequest("A bulk request needs a filter (use {} for every job of your organisation).", parameter="filter")
    where = job_filter(body["filter"])
    reason = control_reason({"reason": body["reason"]} if "reason" in body else {})
    after = body.get("after")
    if "after" in body and (not isinstance(after, str) or len(after) != 24):
        raise BadRequest("after must be the next value of an earlier answer (a job id).", parameter="after")
    limit = body.get("limit", MAX_JOBS)
    if isinstance(limit, float) and limit.is_integer():  # 1000.0 is an integer in JSON
        limit = int(limit)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_JOBS:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_JOBS}.", parameter="limit")
    return where, reason, after, limit


@requires(Role.OPERATOR)
async def bulk_control(request: web.Request) -> web.Response:
    """pause, resume or terminate every matching job (see the module docstring):
    200 with the counts; 400 for a bad filter; 403 below operator."""
    name = request.match_info["action"]
    action = BULK_ACTIONS[name]
    dry_run = bool_param(query_params(request, ("dry_run",)), "dry_run", False)
    request_body = await json_object(request)
    where, reason, after, limit = _request(request_body)
    filter_body = request_body["filter"]
    manager = request.app[MANAGER_KEY]
    org_id = org_of(request)
    jobs = await manager.repo.matching(org_id, where, after, limit)

    async def apply(job: dict[str, Any]) -> dict[str, Any]:
        state = JobState(job["state"])
        entry = {"id": job["_id"], "kind": job["kind"], "before": job["state"]}
        if dry_run:
            outcome = "changed" if state in action.sources else "already" if state in action.satisfied else "refused"
            return {**entry, "after": job["state"], "outcome": outcome}
        try:
            result = await manager.control(org_id, job["_id"], name)
        except InvalidTransition as exc:
            return {
                **entry,
                "before": exc.extra.get("state", job["state"]),
                "after": exc.extra.get("state", job["state"]),
                "outcome": "refused",
            }
        except JobNotFound:  # deleted since it was matched
            return {**entry, "after": None, "outcome": "refused"}
        outcome = "changed" if result.changed else "already"
        return {**entry, "before": result.before, "after": result.job["state"], "outcome": outcome}

    done: list[dict[str, Any]] = []
    for start in range(0, len(jobs), IN_FLIGHT):
        done += await asyncio.gather(*(apply(job) for job in jobs[start : start + IN_FLIGHT]))
    outcomes = Counter(d["outcome"] for d in done)
    refused = Counter(d["after"] or "deleted" for d in done if d["outcome"] == "refused")
    changed = [d for d in done if d["outcome"] == "changed"]
    body = {
        "action": name,
        "dry_run": dry_run,
        "matched": len(done),
        "changed": outcomes["changed"],
        "already": outcomes["already"],
        "refused": outcomes["refused"],
        "refused_states": dict(refused),
        "changed_kinds": dict(Counter(d["kind"] for d in changed)),
        "jobs": done,
        "next": jobs[-1]["_id"] if len(jobs) == limit else None,
    }
    if changed and not dry_run:
        await audit.record(
            request,
            f"jobs.{name}",
            reason=reason,
            jobs=[{k: d[k] for k in ("id", "kind", "before", "after")} for d in changed],
            details={"filter": filter_body, "matched": len(done), "already": body["already"], "refused": body["refused"]},
        )
    return json_response(body)
