"""The ``dataset_profiles`` collection: one document per (org, dataset), keyed
by "org/dataset" so every lookup is a primary-key read, holding the column
profiles of the dataset's last HISTORY completed imports (newest last).

Its size is bounded whatever the number of rows or imports: HISTORY entries
of one bounded column profile per column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ..jobs.model import utcnow

HISTORY = 5
RETRIES = 20


def profile_id(org_id: str, dataset: str) -> str:
    return f"{org_id}/{dataset}"


async def history(profiles: AsyncCollection, org_id: str, dataset: str) -> list[dict[str, Any]]:
    """The dataset's earlier imports, oldest first; [] for a new dataset. The
    org is in the filter as well as in the key: another org's profile is never read."""
    doc = await profiles.find_one({"_id": profile_id(org_id, dataset), "org_id": org_id}, {"imports": 1})
    return list((doc or {}).get("imports") or [])


async def record_import(profiles: AsyncCollection, org_id: str, dataset: str, entry: dict[str, Any]) -> None:
    """Adds a completed import's summary (``entry["job_id"]`` names it), replacing
    an earlier one of the same job (a replayed completion), keeping the last HISTORY.

    A read and a write guarded by the version read, retried when another import
    of the dataset wrote in between, rather than one $push with $slice:
    FerretDB 1.24 ignores $slice, so the array would grow without bound."""
    await _change(profiles, org_id, dataset, lambda imports: [i for i in imports if i["job_id"] != entry["job_id"]] + [entry])


async def forget_import(profiles: AsyncCollection, org_id: str, dataset: str, job_id: str) -> None:
    """A terminated import's rows are gone, so its summary goes too."""
    await _change(profiles, org_id, dataset, lambda imports: [i for i in imports if i["job_id"] != job_id], create=False)


async def _change(
    profiles: AsyncCollection,
    org_id: str,
    dataset: str,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    create: bool = True,
) -> None:
    key = profile_id(org_id, dataset)
    for _ in range(RETRIES):
        doc = await profiles.find_one({"_id": key, "org_id": org_id}, {"imports": 1, "version": 1})
        if doc is None and not create:
            return
        before = list((doc or {}).get("imports") or [])
        imports = change(before)[-HISTORY:]
        if doc is not None and imports == before:
            return
        fields = {
            "imports": imports,
            "columns": imports[-1]["columns"] if imports else [],
            "updated_at": utcnow(),
        }
        if doc is None:
            try:
                await profiles.insert_one({"_id": key, "org_id": org_id, "dataset": dataset, "version": 1, **fields})
                return
            except DuplicateKeyError:
                continue
        version = doc.get("version", 0)
        result = await profiles.update_one(
            {"_id": key, "org_id": org_id, "version": version}, {"$set": {**fields, "version": version + 1}}
        )
        if result.matched_count:
            return
    raise RuntimeError(f"the profile of dataset {dataset!r} kept changing; gave up after {RETRIES} tries")
