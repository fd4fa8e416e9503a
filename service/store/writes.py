"""Idempotent writes: inserting documents whose deterministic _ids make a
replayed batch a no-op, and never taking an unacknowledged write for done."""
from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError

DUPLICATE_KEY = 11000


class WriteConcernNotMet(AutoReconnect):
    """A write was not acknowledged by its write concern (say, a majority): not
    success. It is an AutoReconnect so the job retries it like an outage; the
    writes are idempotent, so sending them again is safe."""


def raise_write_concern_errors(exc: BulkWriteError) -> None:
    concern = exc.details.get("writeConcernErrors") or []
    if concern:
        raise WriteConcernNotMet(f"write concern not satisfied: {concern[0].get('errmsg', concern[0])}")


async def insert_new(collection: AsyncCollection, docs: list[Any]) -> int:
    """Inserts the documents not there yet (a replayed batch finds some there);
    returns how many were new. Any other rejected document raises."""
    if not docs:
        return 0
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        raise_write_concern_errors(exc)
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return len(docs) - len(errors)
    return len(docs)
