"""The import guard: before an import writes its first row, its first
GUARD_ROWS rows are profiled and compared with the dataset's history. With
``guard=warn`` the findings are recorded on the job and it goes on; with
``guard=pause`` a finding pauses the job, with the findings as its reason,
until a person resumes it (accepting the file) or terminates it (nothing to
roll back: nothing was written)."""

from __future__ import annotations

import logging
from typing import Any

from ..jobs.params import ImportParams
from .review import FirstRows

log = logging.getLogger(__name__)

GUARDS = ("off", "warn", "pause")
# Findings kept on the job (all are counted): progress is rewritten at every
# checkpoint, so it stays small even for a file of a thousand columns.
KEPT_FINDINGS = 20


async def guard(ctx: Any) -> None:
    """Runs once, before the first write (``ctx`` is the import's JobContext);
    the outcome is kept in ``progress["guard"]`` so a restarted job does not ask again."""
    params, progress = ctx.params_as(ImportParams), ctx.progress
    mode = params.guard
    if mode == "off" or "guard" in progress or ctx.position is not None:
        return
    rows = ctx.settings.guard_rows
    first = FirstRows(params.columns, params.column_specs(), params.null_values, rows)
    start = params.start(None)
    source = await ctx.upload.reader(start.offset)
    try:
        await first.read(source.read, start, ctx.settings.batch_max_bytes)
    finally:
        await source.close()
    imports = await ctx.profiles.history()
    found = first.findings(imports)
    progress["guard"] = {
        "mode": mode,
        "rows_checked": first.rows,
        "earlier_imports": len(imports),
        "findings_count": len(found),
        "findings": found[:KEPT_FINDINGS],
    }
    if not found:
        await ctx.persist()
        return
    log.info("job %s: the guard found %s", ctx.job_id, ", ".join(f["kind"] for f in found))
    if mode == "warn":
        await ctx.persist()
        return
    await ctx.pause_self({"by": "guard", "rows_checked": first.rows, "findings": found[:KEPT_FINDINGS]})
    progress["guard"]["accepted"] = True
    await ctx.persist()
