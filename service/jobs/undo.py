"""Undo of a completed job: POST /api/v1/jobs/{id}/undo.

An undo is the terminate's rollback applied to a completed job: the user's
``undo`` transition (completed -> undoing, service/jobs/states.py) is one
guarded write, and any replica's runner then claims the job and runs its
kind's ``rollback`` exactly as for a terminate (resumable, fenced, with
progress), ending ``undone``. Only kinds that say ``undoable`` (imports,
teams jobs) may be undone, and only within JOB_UNDO_DAYS of completion: the
write's filter names the window and the ``undoable`` mark the completion set,
so an undo racing the retention sweep that ends the window cannot both win.

What the rollback needs is kept until then: an import's rows are found by
their _id prefix (nothing to keep); a teams job keeps its undo log, which the
sweep drops when the window ends (the kind's ``drop_undo``), leaving a reason
on the job that a later undo's 409 names."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import InvalidTransition
from ..store.db import Database
from .model import iso, utcnow
from .repo import ControlResult, JobRepo
from .runner import Kind
from .states import JobState

WINDOW_ENDED = "the undo window (JOB_UNDO_DAYS) ended; what an undo needs was dropped"


def cutoff(days: float, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(days=days)


def check_kind(kind: Kind) -> None:
    if not kind.undoable:
        raise InvalidTransition(
            f"A {kind.name} job cannot be undone: undo applies to import and teams jobs "
            "(a finished export's file can be deleted with DELETE /api/v1/jobs/{id}).",
            state=JobState.COMPLETED.value,
        )


def why_not(days: float) -> Any:
    """The 409's words for a completed job the undo's guard refused."""

    def explain(job: dict[str, Any]) -> str:
        ended = job.get("undo_ended")
        if ended:
            return f"This job can no longer be undone: {ended.get('reason')} (at {iso(ended.get('at'))})."
        if not job.get("undoable"):
            return (
                "This job completed before undo existed for it: what an undo needs was not kept. "
                "Remove its data with a new job instead."
            )
        return (
            f"This job completed at {iso(job.get('finished_at'))}, more than JOB_UNDO_DAYS={days:g} days ago: "
            "it can no longer be undone."
        )

    return explain


def guard(days: float) -> dict[str, Any]:
    """The undo's extra conditions on the guarded write."""
    return {"undoable": True, "finished_at": {"$gte": cutoff(days)}}


async def request(manager: Any, org_id: str, job: dict[str, Any]) -> ControlResult:
    """The undo transition, through the manager (so the loop claims it at once)."""
    kind = manager.kinds[job["kind"]]
    check_kind(kind)
    days = manager.settings.job_undo_days
    return await manager.control(org_id, job["_id"], "undo", where=guard(days), why_not=why_not(days))


async def preview(db: Database, repo: JobRepo, kinds: dict[str, Kind], job: dict[str, Any], days: float) -> dict[str, Any]:
    """The dry run: whether the job may be undone now (and why not), and what an
    undo would remove or restore, counted now; nothing is written."""
    kind = kinds[job["kind"]]
    body: dict[str, Any] = {"dry_run": True, "job_id": job["_id"], "kind": job["kind"], "state": job["state"]}
    refused = None
    try:
        check_kind(kind)
        if job["state"] != JobState.COMPLETED.value:
            if job["state"] not in (JobState.UNDOING.value, JobState.UNDONE.value):
                refused = f"Cannot undo a job that is {job['state']}; undo applies to completed jobs."
        elif not job.get("undoable") or job.get("finished_at") is None or job["finished_at"] < cutoff(days):
            refused = why_not(days)(job)
    except InvalidTransition as exc:
        refused = exc.detail
    body["undoable"] = refused is None and job["state"] == JobState.COMPLETED.value
    body["refused"] = refused
    finished = job.get("finished_at")
    body["undo_until"] = iso(finished + dt.timedelta(days=days)) if finished and body["undoable"] else None
    body["would"] = await kind.undo_preview(db, repo, job) if kind.undo_preview is not None and body["undoable"] else {}
    return body


async def end_windows(db: Database, repo: JobRepo, kinds: dict[str, Kind], days: float, now: dt.datetime, chunk: int) -> int:
    """Retention: completed jobs past JOB_UNDO_DAYS can no longer be undone; what
    their undo needed goes. Ended first, then dropped: an undo that won the race
    keeps its log (end_undo then matches nothing)."""
    undoable = sorted(name for name, kind in kinds.items() if kind.undoable)
    count = 0
    while batch := await repo.undo_window_over(undoable, cutoff(days, now), chunk):
        for job in batch:
            if not await repo.end_undo(job["_id"], WINDOW_ENDED, now):
                continue
            drop = kinds[job["kind"]].drop_undo
            if drop is not None:
                await drop(db, job)
            count += 1
    return count
