"""What a dataset is: the columns and types of the imports that wrote it.

Exports read committed data only: the rows of completed imports (and, when
asked, of failed ones), never of imports still running, paused or being
rolled back, so the same export twice gives the same file while other jobs run.

A description is bounded whatever the number of imports: counts, and the ids
of the last RECENT_IMPORTS imports only. The imports are read as a stream
from JobRepo, never gathered in one document."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .jobs.model import JobState
from .jobs.repo import JobRepo

COMMITTED = (JobState.COMPLETED,)
WITH_FAILED = (JobState.COMPLETED, JobState.FAILED)
RECENT_IMPORTS = 10
# Progress documents read per query while counting rows.
ROWS_CHUNK = 500


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: list[str]  # first-seen order across the dataset's imports, oldest first
    types: dict[str, str]  # column -> type, for typed columns
    rows: int  # rows its imports inserted
    imports: int  # how many imports wrote it
    recent: list[str]  # the last RECENT_IMPORTS of them, oldest first
    row_bytes: int = 0  # the widest average row of its imports' files, in bytes (sizes export cursor replies)
    digest: str = ""  # imports_digest() of their ids, oldest first


def imports_digest(ids: Iterable[str]) -> str:
    """A fixed-size name for a list of import ids (in _id order): an export
    keeps it, not the list, to know it reads the imports it was created over."""
    h = hashlib.sha256()
    for job_id in ids:
        _add_to_digest(h, job_id)
    return h.hexdigest()


def _add_to_digest(h: Any, job_id: str) -> None:
    """The one form of an id in imports_digest (describe() adds its ids as it streams them)."""
    h.update(job_id.encode() + b"\n")


async def describe(
    repo: JobRepo, org_id: str, name: str, states: tuple[JobState, ...] = COMMITTED, as_of: dt.datetime | None = None
) -> Dataset | None:
    """The dataset as the imports in ``states`` (finished by ``as_of``) wrote
    it; None when the org has no such import (another org's is not visible)."""
    columns: dict[str, None] = {}
    types: dict[str, str] = {}
    recent: deque[str] = deque(maxlen=RECENT_IMPORTS)
    pending: list[str] = []
    imports = rows = row_bytes = 0
    digest = hashlib.sha256()
    async for job in repo.imports(org_id, name, states, as_of):
        imports += 1
        _add_to_digest(digest, job["_id"])
        recent.append(job["_id"])
        pending.append(job["_id"])
        if len(pending) >= ROWS_CHUNK:
            rows += await repo.inserted(org_id, pending)
            pending = []
        params = job.get("params", {})
        if params.get("rows"):
            row_bytes = max(row_bytes, -(-params.get("file_bytes", 0) // params["rows"]))
        for column in params.get("columns", []):
            columns.setdefault(column, None)
        for column, kind in params.get("types", {}).items():
            types.setdefault(column, kind)
    if not imports:
        return None
    rows += await repo.inserted(org_id, pending)
    return Dataset(name, list(columns), types, rows, imports, list(recent), row_bytes, digest.hexdigest())


async def import_ids(repo: JobRepo, org_id: str, name: str, states: tuple[JobState, ...], as_of: dt.datetime | None) -> list[str]:
    """The ids of the imports an export reads (see ExportParams): kept in
    memory while it runs, never stored."""
    return [job["_id"] async for job in repo.imports(org_id, name, states, as_of)]
