"""Idempotent writes: inserting documents whose deterministic _ids make a
replayed batch a no-op, and never taking an unacknowledged write for done."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError

DUPLICATE_KEY = 11000
# The largest document MongoDB stores; an insert command's body may exceed it
# by 16 KiB, so a command carries at most COMMAND_MAX_BYTES of documents, or
# one document of up to this size.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
COMMAND_MAX_BYTES = 8 * 1024 * 1024
COMMAND_MAX_DOCUMENTS = 100_000  # MongoDB's maxWriteBatchSize
_RAW = attrgetter("raw")


class WriteConcernNotMet(AutoReconnect):
    """A write was not acknowledged by its write concern (say, a majority): not
    success. It is an AutoReconnect so the job retries it like an outage; the
    writes are idempotent, so sending them again is safe."""


class Encoded:
    """A document already encoded to BSON (by bson.encode, so valid), for
    insert_encoded. It carries the marker by which bson copies a
    RawBSONDocument's bytes into a message as they are, without
    RawBSONDocument's per-document size check and lazy-decoding state: a third
    of its cost, once per imported row. A unit test checks that bson still
    copies it as it is."""

    __slots__ = ("raw",)
    _type_marker = RawBSONDocument._type_marker

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


async def insert_encoded(
    collection: AsyncCollection, docs: Sequence[Encoded], max_bytes: int = COMMAND_MAX_BYTES
) -> list[dict[str, Any]]:
    """Inserts encoded documents with unordered ``insert`` commands of at most
    ``max_bytes`` of documents each. A document whose _id is there already (a
    replayed batch) counts as done; any other rejected document is returned as
    its write error, ``index`` into ``docs``, and the rest are stored. A
    write-concern error raises WriteConcernNotMet (the batch is sent again).

    insert_many would do the same with a type check, a tuple, a bulk operation
    and a RawBSONDocument per document in Python; the command sends the bytes
    as they are, with the collection's write concern."""
    errors: list[dict[str, Any]] = []
    concern = collection.write_concern
    sizes = list(map(len, map(_RAW, docs)))
    start = 0
    while start < len(docs):
        limit = min(len(docs), start + COMMAND_MAX_DOCUMENTS)
        if sum(sizes[start:limit]) <= max_bytes:  # the usual case: one command, no loop in Python
            end = limit
        else:
            end, size = start + 1, sizes[start]
            while end < limit and size + sizes[end] <= max_bytes:
                size += sizes[end]
                end += 1
        command: dict[str, Any] = {"insert": collection.name, "documents": docs[start:end], "ordered": False}
        if not concern.is_server_default:
            command["writeConcern"] = concern.document
        errors += insert_reply_errors(await collection.database.command(command), start)
        start = end
    return errors


def insert_reply_errors(reply: dict[str, Any], offset: int = 0) -> list[dict[str, Any]]:
    """An ``insert`` command's reply (ok: 1): its write errors other than
    duplicate keys, each ``index`` shifted by ``offset``; raises
    WriteConcernNotMet when it carries a ``writeConcernError``."""
    if reply.get("writeConcernError"):
        error = reply["writeConcernError"]
        raise WriteConcernNotMet(f"write concern not satisfied: {error.get('errmsg', error)}")
    return [{**e, "index": e["index"] + offset} for e in reply.get("writeErrors", ()) if e.get("code") != DUPLICATE_KEY]


def raise_write_concern_errors(exc: BulkWriteError) -> None:
    concern = exc.details.get("writeConcernErrors") or []
    if concern:
        raise WriteConcernNotMet(f"write concern not satisfied: {concern[0].get('errmsg', concern[0])}")


def check_bulk_write(exc: BulkWriteError) -> int:
    """The one decision on an unordered insert's BulkWriteError: a write-concern
    error raises WriteConcernNotMet (the writes may be lost after a failover,
    even when every document was accepted); any write error other than a
    duplicate key re-raises ``exc``; otherwise the documents already there are
    a replay, and their number is returned."""
    raise_write_concern_errors(exc)
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return len(errors)


async def insert_new(collection: AsyncCollection, docs: list[Any]) -> int:
    """Inserts the documents not there yet (a replayed batch finds some there);
    returns how many were new. Any other rejected document raises, and so does
    a write-concern error."""
    if not docs:
        return 0
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        return len(docs) - check_bulk_write(exc)
    return len(docs)
