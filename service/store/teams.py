"""How teams, users and their undo log are keyed.

A user is keyed by (org, E.164 phone) and a team by (org, name), so both are
found with the primary key, a replayed batch cannot create either twice, and
a team name is unique in its org by construction. Team names compare without
case and with runs of white space collapsed: "Sales  North" and "sales north"
are one team. An undo entry is keyed by (job, user), so the first before-image
a job saves for a user is the one kept."""

from __future__ import annotations

from typing import Any

from .records import prefix_range


def user_id(org_id: str, phone: str) -> str:
    return f"{org_id}/{phone}"


def fold(text: str) -> str:
    """Text compared without case and with runs of white space collapsed."""
    return " ".join(text.split()).casefold()


def team_key(name: str) -> str:
    return fold(name)


def team_id(org_id: str, name: str) -> str:
    return f"{org_id}/{team_key(name)}"


def undo_prefix(job_id: str) -> str:
    return f"{job_id}:"


def undo_id(job_id: str, user: str) -> str:
    return f"{undo_prefix(job_id)}{user}"


def undo_range(job_id: str) -> dict[str, str]:
    """The _id range of one job's undo entries."""
    return prefix_range(undo_prefix(job_id))


# What a job created is listed in the undo log too, under its own prefix
# ("<job>+u:<user>", "<job>+t:<team>"; "+" sorts before ":", so these are not
# in undo_range): its rollback walks these by _id instead of asking `users`
# and `teams` for "the job's", which FerretDB answers with a scan.
CREATED_USER, CREATED_TEAM = "u", "t"


def created_prefix(job_id: str, what: str) -> str:
    return f"{job_id}+{what}:"


def created_id(job_id: str, what: str, ref: str) -> str:
    return f"{created_prefix(job_id, what)}{ref}"


def created_range(job_id: str, what: str) -> dict[str, str]:
    """The _id range of the entries listing what one job created (users or teams)."""
    return prefix_range(created_prefix(job_id, what))


async def drop_undo_log(undo: Any, job_id: str) -> int:
    """Deletes a finished teams job's undo log (no job runs for it any more: its
    undo window ended, or the job is deleted). Named by the job's _id prefixes."""
    dropped = (await undo.delete_many({"_id": undo_range(job_id)})).deleted_count
    for what in (CREATED_USER, CREATED_TEAM):
        dropped += (await undo.delete_many({"_id": created_range(job_id, what)})).deleted_count
    return dropped
