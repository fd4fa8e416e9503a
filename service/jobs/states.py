"""The job state machine, in one place: the states, the named sets of states,
and every transition with the states it may leave and who may take it.

Every state change in the service is one of these transitions, written as one
guarded atomic update (service/jobs/repo.py): the filter names the job and the
transition's source states, and a runner's own transitions also name its
ownership epoch, so two racing writers can never both win. The state diagram
in docs/engine.md is generated from this table (a test keeps it current)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSING = "pausing"  # a pause is requested; the runner has not stopped writing yet
    PAUSED = "paused"  # written by the runner once it stopped with nothing in flight
    COMPLETED = "completed"
    TERMINATING = "terminating"  # rolling back: a phase with real work, resumable by any replica
    TERMINATED = "terminated"
    FAILED = "failed"
    # An undo of a completed job: the same rollback as a terminate (resumable by
    # any replica, fenced, with progress), ending in its own state so that the
    # job says it was undone rather than stopped.
    UNDOING = "undoing"
    UNDONE = "undone"


Q, R, PG, P, C, TG, T, F, UG, U = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.PAUSING,
    JobState.PAUSED,
    JobState.COMPLETED,
    JobState.TERMINATING,
    JobState.TERMINATED,
    JobState.FAILED,
    JobState.UNDOING,
    JobState.UNDONE,
)

# States in which a runner may hold the job (and carry on when it finds it so).
# They are also the states that hold the org's admission slot: a paused job
# keeps it so that resume never waits, and a terminating job keeps it until
# its rollback is done (or has failed without progress for
# ROLLBACK_GIVE_UP_SECONDS), so a corrected upload starts on clean data.
ACTIVE = frozenset({R, PG, P, TG, UG})
HOLDS_SLOT = ACTIVE
# States whose runner rolls the job back (a terminate, or an undo).
ROLLING_BACK = frozenset({TG, UG})
# States in which some replica must be running code for the job.
NEEDS_RUNNER = frozenset({R, PG, TG, UG})
# States no runner is for; a job in one has ``finished_at``.
FINISHED = frozenset({C, T, F, U})
# States nothing but retention, a delete (or, for a completed job, an undo) changes.
FINAL = frozenset({C, T, U})

Who = Literal["user", "runner"]


@dataclass(frozen=True)
class Transition:
    """One edge set of the state machine. ``sources`` are the states it
    changes. For a user's request, in one of the ``satisfied`` states it has
    already taken effect, so repeating it (a retry after a lost response)
    answers 200 and changes nothing; outside both, it is a 409."""

    name: str
    sources: frozenset[JobState]
    target: JobState
    by: Who
    satisfied: frozenset[JobState] = frozenset()
    why: str = ""


# -- a user's requests (POST /api/v1/jobs/{id}/{name}) ---------------------------
PAUSE = Transition("pause", frozenset({R}), PG, "user", frozenset({PG, P}), "stop writing at the next unit boundary")
RESUME = Transition("resume", frozenset({PG, P}), R, "user", frozenset({R}), "carry on from the checkpoint")
TERMINATE = Transition(
    "terminate", frozenset({Q, R, PG, P, F}), TG, "user", frozenset({TG, T}), "stop and roll back everything the job wrote"
)
RETRY = Transition("retry", frozenset({F}), Q, "user", frozenset({Q, R}), "queue a failed job again, from its checkpoint")
# POST /jobs/{id}/undo: a kind that says ``undoable``, within JOB_UNDO_DAYS of
# its completion (repo.request's extra guard; service/jobs/undo.py).
UNDO = Transition("undo", frozenset({C}), UG, "user", frozenset({UG, U}), "roll a completed job back, like a terminate")

# -- a runner's own transitions (each also fenced by the runner's epoch) ---------
START = Transition("start", frozenset({Q}), R, "runner", why="admitted: a replica claimed the queued job")
PAUSE_SELF = Transition("pause_self", frozenset({R}), PG, "runner", why="the import guard found a suspicious file")
PAUSED = Transition("paused", frozenset({PG}), P, "runner", why="stopped with nothing in flight")
COMPLETE = Transition("complete", frozenset({R}), C, "runner", why="every row is written")
FAIL = Transition("fail", frozenset({R, PG, P}), F, "runner", why="a row-error policy, a bug, or a database away too long")
ROLLED_BACK = Transition("rolled_back", frozenset({TG}), T, "runner", why="the rollback removed everything")
UNDONE_T = Transition("undone", frozenset({UG}), U, "runner", why="the undo's rollback removed everything")
DOWNLOAD_ENDED = Transition("download_ended", ACTIVE, T, "runner", why="a streamed download's client left or its replica stopped")

ACTIONS: dict[str, Transition] = {t.name: t for t in (PAUSE, RESUME, TERMINATE, RETRY)}
# Applied to many jobs at once by POST /jobs/{action} (service/api/bulk.py).
BULK_ACTIONS: dict[str, Transition] = {t.name: t for t in (PAUSE, RESUME, TERMINATE)}
# Every user's request, by name (the undo has its own route and guard).
USER_TRANSITIONS: dict[str, Transition] = {t.name: t for t in (PAUSE, RESUME, TERMINATE, RETRY, UNDO)}
# How each rolling-back state ends.
ROLLBACK_END: dict[JobState, Transition] = {TG: ROLLED_BACK, UG: UNDONE_T}
TRANSITIONS: tuple[Transition, ...] = (
    PAUSE,
    RESUME,
    TERMINATE,
    RETRY,
    UNDO,
    START,
    PAUSE_SELF,
    PAUSED,
    COMPLETE,
    FAIL,
    ROLLED_BACK,
    UNDONE_T,
    DOWNLOAD_ENDED,
)


def values(states: frozenset[JobState] | tuple[JobState, ...]) -> list[str]:
    return sorted(s.value for s in states)


def mermaid() -> str:
    """The state diagram, as docs/engine.md shows it."""
    lines = ["stateDiagram-v2", "    [*] --> queued"]
    for t in TRANSITIONS:
        for source in sorted(t.sources, key=list(JobState).index):
            lines.append(f"    {source.value} --> {t.target.value}: {t.name} ({t.by})")
    lines += ["    completed --> [*]", "    terminated --> [*]", "    undone --> [*]"]
    return "\n".join(lines)
