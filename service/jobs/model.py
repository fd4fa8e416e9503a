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
    PAUSED = "paused"
    COMPLETED = "completed"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


# States in which a job holds an admission slot: a paused job keeps its slot so
# that resume never has to wait, and a terminating job keeps it until its
# rollback is done, so a corrected upload starts on clean data.
HOLDS_SLOT = frozenset({JobState.RUNNING, JobState.PAUSED, JobState.TERMINATING})
# States in which some replica must be running code for the job.
NEEDS_RUNNER = frozenset({JobState.RUNNING, JobState.TERMINATING})
FINAL = frozenset({JobState.COMPLETED, JobState.TERMINATED})


@dataclass(frozen=True)
class Action:
    name: str
    sources: frozenset[JobState]
    target: JobState


PAUSE = Action("pause", frozenset({JobState.RUNNING}), JobState.PAUSED)
RESUME = Action("resume", frozenset({JobState.PAUSED}), JobState.RUNNING)
TERMINATE = Action(
    "terminate",
    frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED, JobState.FAILED}),
    JobState.TERMINATING,
)
ACTIONS = {a.name: a for a in (PAUSE, RESUME, TERMINATE)}


def new_job_id() -> str:
    """Ids are ObjectIds as strings: unique across replicas and sortable by creation time."""
    return str(ObjectId())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
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
        "owner": doc.get("owner"),  # the replica running it, if any
        "created_at": _iso(doc.get("created_at")),
        "started_at": _iso(doc.get("started_at")),
        "finished_at": _iso(doc.get("finished_at")),
        "links": {
            "self": base,
            "pause": f"{base}/pause",
            "resume": f"{base}/resume",
            "terminate": f"{base}/terminate",
        },
    }
    if doc.get("result"):
        body["result"] = doc["result"]
        body["links"]["result"] = f"{base}/result"
    return body
