"""Job ids, times, and the job's JSON form. The states and transitions are in
service/jobs/states.py; they are re-exported here for the modules that read jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId

from .states import (
    ACTIONS,
    ACTIVE,
    FINAL,
    FINISHED,
    HOLDS_SLOT,
    NEEDS_RUNNER,
    PAUSE,
    RESUME,
    RETRY,
    TERMINATE,
    JobState,
    Transition,
)

# The state machine is re-exported for the modules that read jobs.
__all__ = [
    "ACTIONS",
    "ACTIVE",
    "FINAL",
    "FINISHED",
    "HOLDS_SLOT",
    "NEEDS_RUNNER",
    "PAUSE",
    "RESUME",
    "RETRY",
    "TERMINATE",
    "JobState",
    "Transition",
    "iso",
    "job_json",
    "new_job_id",
    "utcnow",
]


def new_job_id() -> str:
    """Ids are ObjectIds as strings: unique across replicas and sortable by creation time."""
    return str(ObjectId())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_json(doc: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a job document."""
    job_id = doc["_id"]
    base = f"/api/v1/jobs/{job_id}"
    body: dict[str, Any] = {
        "id": job_id,
        "kind": doc["kind"],
        "state": doc["state"],
        "org_id": doc["org_id"],
        "params": doc.get("params", {}),
        "progress": doc.get("progress", {}),
        "errors": doc.get("errors", []),
        "error": doc.get("error"),
        # Why the job paused itself (the import guard), and what the guard found.
        "pause_reason": doc.get("pause_reason"),
        "findings": ((doc.get("progress") or {}).get("guard") or {}).get("findings", []),
        "retryable": doc.get("retryable") if doc["state"] == JobState.FAILED.value else None,
        "owner": doc.get("owner"),  # the replica running it, if any
        "epoch": doc.get("epoch", 0),  # grows with every claim or adoption
        "created_at": iso(doc.get("created_at")),
        "started_at": iso(doc.get("started_at")),
        "finished_at": iso(doc.get("finished_at")),
        "links": {
            "self": base,
            "pause": f"{base}/pause",
            "resume": f"{base}/resume",
            "terminate": f"{base}/terminate",
            "retry": f"{base}/retry",
        },
    }
    if doc.get("queue"):
        body["queue"] = doc["queue"]  # why a queued job waits (service/jobs/queue.py)
    if doc.get("waiting"):
        body["waiting"] = doc["waiting"]  # why a rollback or undo has not started (same)
    rollback = doc.get("rollback")
    if rollback:
        body["rollback"] = {
            "error": rollback.get("error"),
            "attempts": rollback.get("attempts", 0),
            "next_attempt_at": iso(rollback.get("next_at")),
            "failing_since": iso(rollback.get("failing_since")),
            "slot_released": bool(doc.get("slot_released")),
        }
    if doc["state"] == JobState.COMPLETED.value and "undoable" in doc:
        body["undoable"] = bool(doc["undoable"])
        body["undo_ended"] = _undo_ended(doc.get("undo_ended"))
        if doc["undoable"]:
            body["links"]["undo"] = f"{base}/undo"
    if doc.get("result"):
        body["result"] = doc["result"]
        body["links"]["result"] = f"{base}/result"
    return body


def _undo_ended(ended: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if not ended else {"at": iso(ended.get("at")), "reason": ended.get("reason")}
