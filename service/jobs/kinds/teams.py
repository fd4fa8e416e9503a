"""Bulk team creation: stream the stored sheet, create teams and users batch by
batch (see service/teams/batch.py for the write order); roll back with
compensating updates and by deleting what the job created."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ...csvio.records import RecordReader
from ...store.teams import drop_undo_log
from ...teams.batch import Undo, apply_batch, check_batch
from ...teams.batch import undo_preview as preview
from ...teams.rows import RowError, RowParser, parse_batch
from ..model import utcnow
from ..params import TeamsParams
from ..runner import JobContext, Kind

COUNTERS = ("processed", "teams_created", "users_created", "users_updated", "failed")


async def run(ctx: JobContext) -> None:
    params, progress, org_id, teams = ctx.params_as(TeamsParams), ctx.progress, ctx.org_id, ctx.teams
    for key in COUNTERS:
        progress.setdefault(key, 0)
    progress.setdefault("total", params.rows)
    failed_by_kind = Counter(progress.get("failed_by_kind") or {})
    parser = RowParser(params.layout, params.width, params.region)
    fail_fast = params.fail_fast

    start = params.start(ctx.position)
    source = await ctx.upload.reader(start.offset)
    try:
        reader = RecordReader(source.read, start)
        async for records in reader.batches(params.batch_size, ctx.settings.batch_max_bytes):
            position = reader.position().as_dict()
            parsed = await parse_batch(parser, records)
            rows, rejected, users = await check_batch(
                teams.teams_collection, teams.users_collection, org_id, ctx.job_id, parsed, {}
            )
            errors = sorted([p for p in parsed if isinstance(p, RowError)] + rejected, key=lambda e: e.row)
            processed = len(records)
            if errors and fail_fast:
                # Stop at the first bad row: rows before it are created, none after.
                first_bad = errors[0].row
                rows = [r for r in rows if r.row < first_bad]
                errors = errors[:1]
                processed = first_bad - records[0].row + 1
            applied = await apply_batch(teams, org_id, rows, users, utcnow())

            progress["processed"] += processed
            progress["failed"] += len(errors)
            progress["teams_created"] += applied.teams_created
            progress["users_created"] += applied.users_created
            progress["users_updated"] += applied.users_updated
            failed_by_kind.update(e.kind for e in errors)
            progress["failed_by_kind"] = dict(failed_by_kind)
            await ctx.checkpoint_rows(position, [e.as_dict() for e in errors])
    finally:
        await source.close()
    progress["total"] = progress["processed"]
    progress["percent"] = 100.0


async def rollback(ctx: JobContext) -> None:
    """Three resumable phases, each a loop of chunks with a checkpoint between:
    compensate the existing users the job changed (each undo entry is dropped
    once applied), take the job's teams out of the users it created and delete
    those left empty, delete its teams."""
    ctx.inject_fault("rollback")
    progress = ctx.progress
    for key in ("users_restored", "users_deleted", "users_kept", "teams_deleted"):
        progress.setdefault(key, 0)
    undo = Undo(ctx.teams, ctx.org_id)
    while (changed := await undo.changed_users()) is not None:
        progress["users_restored"] += changed[0]
        progress["users_deleted"] += changed[1]
        await ctx.checkpoint()
    if ctx.params_as(TeamsParams).created_list:
        # The job listed what it created: walked by _id, on any database.
        while (listed := await undo.listed_users()) is not None:
            progress["users_deleted"] += listed[0]
            progress["users_kept"] += listed[1]
            await ctx.checkpoint()
        while (deleted := await undo.listed_teams()) is not None:
            progress["teams_deleted"] += deleted
            await ctx.checkpoint()
    else:
        # A job from before the list: found by its job_id tags (an index on
        # MongoDB, a scan of users and teams per chunk on FerretDB).
        while (chunk := await undo.created_users(progress.get("rollback_users_after", ""))) is not None:
            progress["rollback_users_after"], deleted, kept = chunk
            progress["users_deleted"] += deleted
            progress["users_kept"] += kept
            await ctx.checkpoint()
        while (deleted := await undo.teams()) is not None:
            progress["teams_deleted"] += deleted
            await ctx.checkpoint()
    await ctx.upload.delete()


async def cleanup(ctx: JobContext) -> None:
    """A completed job's upload goes; its undo entries stay for an undo, until
    JOB_UNDO_DAYS have passed (retention's drop_undo) or the job is deleted.
    A failed job keeps both, for a retry or a terminate."""
    await ctx.upload.delete()


async def undo_preview(db: Any, repo: Any, job: dict[str, Any]) -> dict[str, Any]:
    return await preview(db.teams, db.users, db.undo, job["org_id"], job["_id"])


async def drop_undo(db: Any, job: dict[str, Any]) -> None:
    await drop_undo_log(db.undo, job["_id"])


# An org's teams jobs run one at a time, so one sheet's rows are never
# interleaved with another's, and an undo waits for the org's slot like one;
# a completed job's teams and users stay when it is deleted (only its record
# and undo log go). Undo compensates exactly as a terminate does: a later
# job's teams, and the users they list, survive it.
KIND = Kind(
    name="teams",
    params=TeamsParams,
    run=run,
    rollback=rollback,
    cleanup=cleanup,
    org_limit=lambda settings: 1,
    completed_deletable=True,
    delete_result=drop_undo,
    undoable=True,
    undo_preview=undo_preview,
    drop_undo=drop_undo,
)
