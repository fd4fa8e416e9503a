"""Job states, the transitions a user may request, and the job's JSON form."""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from bson import ObjectId


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSING = "pausing"  # a pause is requested; the runner has not stopped writing yet
    PAUSED = "paused"  # written by the runner once it stopped with nothing in flight
    COMPLETED = "completed"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


# States in which a job holds its org's admission slot: a paused job keeps it
# so that resume never has to wait, and a terminating job keeps it until its
# rollback is done (or has failed for ROLLBACK_GIVE_UP_SECONDS), so a corrected
# upload starts on clean data.
HOLDS_SLOT = frozenset({JobState.RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.TERMINATING})
# States in which some replica must be running code for the job.
NEEDS_RUNNER = frozenset({JobState.RUNNING, JobState.PAUSING, JobState.TERMINATING})
FINAL = frozenset({JobState.COMPLETED, JobState.TERMINATED})
# States a runner may find its job in and carry on; any other (queued,
# completed, failed, terminated) means the job is no longer this runner's.
RUNNER_STATES = frozenset({JobState.RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.TERMINATING})


@dataclass(frozen=True)
class Action:
    """A user's request. ``sources`` are the states it changes; in one of the
    ``satisfied`` states it has already taken effect, so repeating it (a retry
    after a lost response) answers 200 and changes nothing."""

    name: str
    sources: frozenset[JobState]
    target: JobState
    satisfied: frozenset[JobState]


PAUSE = Action("pause", frozenset({JobState.RUNNING}), JobState.PAUSING, frozenset({JobState.PAUSING, JobState.PAUSED}))
RESUME = Action("resume", frozenset({JobState.PAUSING, JobState.PAUSED}), JobState.RUNNING, frozenset({JobState.RUNNING}))
TERMINATE = Action(
    "terminate",
    frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.FAILED}),
    JobState.TERMINATING,
    frozenset({JobState.TERMINATING, JobState.TERMINATED}),
)
# Retry puts a failed job back in the queue; it continues from its checkpoint.
RETRY = Action("retry", frozenset({JobState.FAILED}), JobState.QUEUED, frozenset({JobState.QUEUED, JobState.RUNNING}))
ACTIONS = {a.name: a for a in (PAUSE, RESUME, TERMINATE, RETRY)}


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
    rollback = doc.get("rollback")
    if rollback:
        body["rollback"] = {
            "error": rollback.get("error"),
            "attempts": rollback.get("attempts", 0),
            "next_attempt_at": iso(rollback.get("next_at")),
            "failing_since": iso(rollback.get("failing_since")),
            "slot_released": bool(doc.get("slot_released")),
        }
    if doc.get("result"):
        body["result"] = doc["result"]
        body["links"]["result"] = f"{base}/result"
    return body
