"""Why a queued job waits, and its place in its org's queue: worked out when
the job is read (GET /jobs, GET /jobs/{id}), never stored, so reading writes
nothing. Per (org, kind) among the jobs read: the org's queue (ids only) and
the jobs holding the org's slots, each one query that an index on org_id
serves, whatever the number of jobs read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..settings import Settings
from .repo import JobRepo, rollback_needs_slot
from .states import JobState

# What a person calls a holder's state.
STATE_WORDS = {
    JobState.RUNNING.value: "running",
    JobState.PAUSING.value: "pausing",
    JobState.PAUSED.value: "paused",
    JobState.TERMINATING.value: "rolling back",
    JobState.UNDOING.value: "being undone",
}


def _holders(holders: list[dict[str, Any]]) -> tuple[list[dict[str, str]], str]:
    """The holders as the API lists them, and in words."""
    named = [{"id": h["_id"], "state": h["state"]} for h in holders]
    return named, ", ".join(f"{h['_id']} ({STATE_WORDS.get(h['state'], h['state'])})" for h in holders)


def _slot_taken(doc: dict[str, Any], limit: int, holders: list[dict[str, Any]]) -> dict[str, Any]:
    what = UNDOING_WORDS.get(doc["state"], "rollback")
    named, held = _holders(holders)
    text = f"the {what} waits for the org's {doc['kind']} slot, held by job {held}: it starts once that job has ended (a paused job keeps its slot)"
    return {"waiting_for": "org_slot", "reason": text, "holders": named, "limit": limit}


def _jobs(n: int, kind: str) -> str:
    return f"{n} {kind} job{'s' if n != 1 else ''}"


def reason(kind: str, limit: int | None, holders: list[dict[str, Any]], position: int, max_running: int) -> dict[str, Any]:
    """The ``queue`` of a job at ``position`` (1 = next) in its org's queue of ``kind``."""
    named, held = _holders(holders)
    if limit is not None and len(holders) + position - 1 >= limit and holders:
        if limit == 1:
            text = f"the org's {kind} slot is held by job {held}"
        else:
            text = f"the org's limit of {_jobs(limit, kind)} is reached: held by {held}"
        return {"waiting_for": "org_slot", "reason": text, "holders": named, "limit": limit}
    if position > 1:
        text = f"{_jobs(position - 1, kind)} of the org queued before it start first"
        return {"waiting_for": "older_jobs", "reason": text, "holders": named, "limit": limit}
    text = f"waiting for a free process slot on the replicas (each runs at most {max_running} job{'s' if max_running != 1 else ''} at a time)"
    return {"waiting_for": "process_slot", "reason": text, "holders": named, "limit": limit}


# What a rollback that waits for its org's slot is doing, in words.
UNDOING_WORDS = {JobState.TERMINATING.value: "rollback", JobState.UNDOING.value: "undo"}


async def explain(repo: JobRepo, kinds: Mapping[str, Any], settings: Settings, docs: Iterable[dict[str, Any]]) -> None:
    """Adds ``queue`` to each queued job of ``docs``: why it waits, and its
    ``position`` among ``of`` queued jobs of its org and kind (admission takes
    an org's jobs of a kind oldest first); and ``waiting`` to a rollback or
    undo that no replica runs because its org's slot is taken (it must not
    run beside the org's next job of its kind: JobManager._may_run)."""
    docs = list(docs)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for doc in docs:
        if doc["state"] == JobState.QUEUED.value:
            groups.setdefault((doc["org_id"], doc["kind"]), []).append(doc)
        elif not doc.get("owner") and rollback_needs_slot(doc):  # no runner has it
            known = kinds.get(doc["kind"])
            limit = known.org_limit(settings) if known is not None else None
            if limit is not None:
                holders = await repo.rollback_blocking(doc["org_id"], doc["kind"], doc["_id"], limit)
                if len(holders) >= limit:
                    doc["waiting"] = _slot_taken(doc, limit, holders)
    for (org_id, kind), waiting in groups.items():
        order = {job_id: i for i, job_id in enumerate(await repo.queued(org_id, kind, settings.max_queued_per_org), 1)}
        known = kinds.get(kind)
        limit = known.org_limit(settings) if known is not None else None
        holders = await repo.slot_holding(org_id, kind, limit) if limit is not None else []
        for doc in waiting:
            position = order.get(doc["_id"])
            if position is None:  # started (or was terminated) between the two reads
                continue
            doc["queue"] = {
                "position": position,
                "of": len(order),
                **reason(kind, limit, holders, position, settings.max_running_jobs),
            }
