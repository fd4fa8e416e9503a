"""What a dataset is: the columns and types of the imports that wrote it.

Exports read committed data only: the rows of completed imports (and, when
asked, of failed ones), never of imports still running, paused or being
rolled back, so the same export twice gives the same file while other jobs run."""
from __future__ import annotations

from dataclasses import dataclass

from .jobs.model import JobState
from .store.db import Database

COMMITTED = (JobState.COMPLETED,)
WITH_FAILED = (JobState.COMPLETED, JobState.FAILED)


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: list[str]  # first-seen order across the dataset's imports, oldest first
    types: dict[str, str]  # column -> type, for typed columns
    rows: int  # rows its imports inserted
    jobs: list[str]  # the imports whose rows it holds, oldest first
    row_bytes: int = 0  # the widest average row of its imports' files, in bytes (sizes export cursor replies)


async def describe(db: Database, org_id: str, name: str, states: tuple[JobState, ...] = COMMITTED) -> Dataset | None:
    """The dataset as the imports in ``states`` wrote it; None when the org has
    no such import (another org's is not visible)."""
    cursor = db.jobs.find(
        {"org_id": org_id, "kind": "import", "params.dataset": name, "state": {"$in": [s.value for s in states]}},
        {"params.columns": 1, "params.types": 1, "params.file_bytes": 1, "params.rows": 1},
        sort=[("_id", 1)],
    )
    columns: dict[str, None] = {}
    types: dict[str, str] = {}
    ids = []
    row_bytes = 0
    async for job in cursor:
        ids.append(job["_id"])
        params = job.get("params", {})
        if params.get("rows"):
            row_bytes = max(row_bytes, -(-params.get("file_bytes", 0) // params["rows"]))
        for column in params.get("columns", []):
            columns.setdefault(column, None)
        for column, kind in params.get("types", {}).items():
            types.setdefault(column, kind)
    if not ids:
        return None
    rows = 0
    async for run in db.job_progress.find({"_id": {"$in": ids}, "org_id": org_id}, {"progress.inserted": 1}):
        rows += (run.get("progress") or {}).get("inserted", 0)
    return Dataset(name, list(columns), types, rows, ids, row_bytes)
