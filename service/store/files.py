"""Files in GridFS's layout (``<bucket>.files`` and ``<bucket>.chunks``, so standard
GridFS tools can read them), written and read in bounded pieces.

PyMongo's GridIn buffers up to 32 MB of chunks before inserting them (and then
encodes that into one message), and GridOut cannot bound its cursor's batch
size; both made memory depend on the file. These never hold more than a few
chunks."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from gridfs.errors import CorruptGridFile, NoFile
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from ..errors import PayloadTooLarge
from .writes import insert_new

CHUNK_BYTES = 255 * 1024
CHUNKS_PER_WRITE = 4
CHUNKS_PER_READ = 8
CURSOR_NOT_FOUND = 43


@dataclass(frozen=True)
class StoredFile:
    file_id: ObjectId
    size: int


class Bucket:
    def __init__(self, db: AsyncDatabase, name: str, chunk_size: int = CHUNK_BYTES) -> None:
        self.files: AsyncCollection = db[f"{name}.files"]
        self.chunks: AsyncCollection = db[f"{name}.chunks"]
        self.chunk_size = chunk_size

    async def ensure_indexes(self) -> None:
        # The name PyMongo's GridFS gives it. Files are found by _id, so the
        # files collection needs no (filename, uploadDate) index of its own.
        # (What an org stores is counted by its reservations, not by its files.)
        await self.chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)

    def writer(self, file_id: ObjectId | str, filename: str, metadata: dict[str, Any]) -> ChunkWriter:
        return ChunkWriter(self, file_id, filename, metadata)

    async def reader(self, file_id: Any, offset: int = 0, end: int | None = None) -> ChunkReader:
        doc = await self.files.find_one({"_id": file_id})
        if doc is None:
            raise NoFile(f"no file {file_id}")
        return ChunkReader(self.chunks, doc, offset, end)

    async def file(self, file_id: Any) -> dict[str, Any] | None:
        return await self.files.find_one({"_id": file_id})

    async def started_before(self, cutoff: ObjectId, after: ObjectId | None, limit: int) -> list[dict[str, Any]]:
        """Files whose writing started before ``cutoff`` (a file's _id is made
        when its writer starts), oldest first after ``after``, with their metadata."""
        bounds: dict[str, Any] = {"$lt": cutoff}
        if after is not None:
            bounds["$gt"] = after
        return await self.files.find({"_id": bounds}, {"metadata": 1}, sort=[("_id", 1)], limit=limit).to_list()

    async def orphan_chunks(self, cutoff: ObjectId, after: ObjectId | None, limit: int) -> tuple[list[ObjectId], ObjectId | None]:
        """The ids of files started before ``cutoff`` that have chunks but no files
        document (a writer killed mid-file; a live writer's files document comes
        last), among the next ``limit`` files with chunks after ``after``; and
        where the next call continues (None at the end). Each file is found by
        its first chunk (n=0): one index entry per file, not one per chunk."""
        bounds: dict[str, Any] = {"$lt": cutoff}
        if after is not None:
            bounds["$gt"] = after
        firsts = await self.chunks.find(
            {"files_id": bounds, "n": 0}, {"files_id": 1}, sort=[("files_id", 1)], limit=limit
        ).to_list()
        ids = [c["files_id"] for c in firsts]
        if not ids:
            return [], None
        present = {f["_id"] async for f in self.files.find({"_id": {"$in": ids}}, {"_id": 1})}
        return [i for i in ids if i not in present], ids[-1]

    async def named_before(self, cutoff: str, after: str | None, limit: int) -> list[str]:
        """The string ids before ``cutoff`` (after ``after``), of files whole or
        chunks only, the next ``limit`` of them in order: an export attempt's
        file is named "<job id>:<epoch>", so its name sorts by its job's start.
        (The ObjectId ranges above never match a string _id.)"""
        bounds = {"$lt": cutoff, "$gt": after or ""}
        whole = await self.files.find({"_id": bounds}, {"_id": 1}, sort=[("_id", 1)], limit=limit).to_list()
        firsts = await self.chunks.find(
            {"files_id": bounds, "n": 0}, {"files_id": 1}, sort=[("files_id", 1)], limit=limit
        ).to_list()
        return sorted({f["_id"] for f in whole} | {c["files_id"] for c in firsts})[:limit]

    async def delete(self, file_id: Any) -> None:
        """Deletes the file, or what a writer left of it (chunks without a files
        document, after a crash); no error if there is nothing."""
        if file_id is None:
            return
        await self.files.delete_one({"_id": file_id})
        await self.chunks.delete_many({"files_id": file_id})


class ChunkWriter:
    """Writes a file chunk by chunk, a few chunks per insert; the files document
    is written last, so a file is only visible once complete.

    A writer that must survive its process (an export's attempt) makes what it
    has written durable with sync(), short last chunk included, and a later
    writer continues such a file with resume()."""

    def __init__(self, bucket: Bucket, file_id: Any, filename: str, metadata: dict[str, Any]) -> None:
        self.bucket = bucket
        self.file_id = file_id
        self.filename = filename
        self.metadata = metadata
        self.length = 0  # bytes in whole chunks (stored or pending); the buffer holds the rest
        self._buffer = bytearray()
        self._pending: list[dict[str, Any]] = []
        self._n = 0
        # The number of a chunk stored short (by sync() or an earlier run): it is
        # replaced, not inserted, when it is written again.
        self._short: int | None = None

    @property
    def written(self) -> int:
        """Every byte given to write(), stored or not."""
        return self.length + len(self._buffer)

    async def write(self, data: bytes) -> None:
        self.add(data)
        while self.full():
            await self.store_some()

    # write() as steps, for a caller that sends each store as a fenced write of
    # its own (FencedWriter): add() and seal() only cut chunks in memory; each
    # store_*() may be sent again after a failure, with the same effect.

    def add(self, data: bytes) -> None:
        """Cuts what fills whole chunks into the chunks waiting to be stored."""
        self._buffer += data
        size = self.bucket.chunk_size
        while len(self._buffer) >= size:
            self._add(bytes(self._buffer[:size]))
            del self._buffer[:size]

    def full(self) -> bool:
        return len(self._pending) >= CHUNKS_PER_WRITE

    async def store_some(self) -> None:
        """Stores up to CHUNKS_PER_WRITE waiting chunks (a replay finds them there)."""
        await self._insert(CHUNKS_PER_WRITE)

    async def sync(self) -> int:
        """Stores everything written so far: the whole chunks waiting, and the
        rest as a short last chunk, replaced as it fills (GridFS allows only the
        last chunk to be short). Until close() writes the files document no
        reader sees the file at all. Returns the bytes stored. Sent again, it
        stores the same."""
        await self._insert()
        if self._buffer:
            chunk = {"files_id": self.file_id, "n": self._n, "data": bytes(self._buffer)}
            await self.bucket.chunks.replace_one({"files_id": self.file_id, "n": self._n}, chunk, upsert=True)
            self._short = self._n
        return self.written

    async def resume(self, source_id: Any, length: int, send: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]) -> bool:
        """Continues this file after the first ``length`` bytes of ``source_id``'s
        chunks, as a sync() stored them: another writer's file (its whole chunks
        are copied, a few per insert, nothing else of this file is kept) or this
        file itself (what it holds past ``length`` goes). The rest of the last
        chunk is read into the buffer. Every write goes through ``send`` (the
        caller's fence). False when the source does not hold those bytes: the
        writer is then as new, and so is the file."""
        size = self.bucket.chunk_size
        whole, tail = divmod(length, size)
        own = source_id == self.file_id
        # What is read: the chunks to copy (none from this file itself) and the
        # one the tail is in. What this file keeps: nothing when it takes
        # another's bytes, else its chunks up to the tail's (replaced as it fills).
        first = whole if own else 0
        stop = whole + 1 if tail else whole
        await send(lambda: self.bucket.chunks.delete_many({"files_id": self.file_id, "n": {"$gte": stop if own else 0}}))
        wanted = {"files_id": source_id, "n": {"$gte": first, "$lt": stop}}
        cursor = self.bucket.chunks.find(wanted, sort=[("n", 1)], batch_size=CHUNKS_PER_READ)
        expected, copies, buffer = first, [], b""
        try:
            async for chunk in cursor:
                data = bytes(chunk["data"])
                whole_chunk = chunk["n"] < whole
                if chunk["n"] != expected or (len(data) != size if whole_chunk else len(data) < tail):
                    break
                expected += 1
                if not whole_chunk:
                    buffer = data[:tail]
                    continue
                copies.append({"files_id": self.file_id, "n": chunk["n"], "data": data})
                if len(copies) >= CHUNKS_PER_WRITE:
                    batch, copies = copies, []
                    await send(lambda: insert_new(self.bucket.chunks, batch))  # noqa: B023 (called within this iteration)
        finally:
            await cursor.close()
        if expected != stop:
            await send(lambda: self.bucket.chunks.delete_many({"files_id": self.file_id}))
            return False
        if copies:
            await send(lambda: insert_new(self.bucket.chunks, copies))
        self._n, self.length, self._buffer = whole, whole * size, bytearray(buffer)
        self._short = whole if own and tail else None
        return True

    async def reset(self) -> None:
        """Starts the file again: whatever of it is stored goes."""
        self._pending, self._buffer, self._n, self.length, self._short = [], bytearray(), 0, 0, None
        await self.bucket.chunks.delete_many({"files_id": self.file_id})

    async def close(self) -> StoredFile:
        self.seal()
        await self._insert()
        return await self.store_files_document()

    def seal(self) -> None:
        """The rest of the buffer becomes the last chunk, waiting to be stored."""
        if self._buffer:
            self._add(bytes(self._buffer))
            self._buffer.clear()

    def sealed(self) -> bool:
        return not self._pending and not self._buffer

    async def store_files_document(self) -> StoredFile:
        """Makes the file visible, once all its chunks are stored; one already
        there (a replay) is this one."""
        assert self.sealed(), "the file's chunks are stored before its files document"
        await insert_new(
            self.bucket.files,
            [
                {
                    "_id": self.file_id,
                    "length": self.length,
                    "chunkSize": self.bucket.chunk_size,
                    "uploadDate": dt.datetime.now(dt.timezone.utc),
                    "filename": self.filename,
                    "metadata": self.metadata,
                }
            ],
        )
        return StoredFile(self.file_id, self.length)

    async def abort(self) -> None:
        self._pending.clear()
        self._buffer.clear()
        await self.bucket.delete(self.file_id)

    def _add(self, data: bytes) -> None:
        self._pending.append({"files_id": self.file_id, "n": self._n, "data": data})
        self._n += 1
        self.length += len(data)

    async def _insert(self, most: int | None = None) -> None:
        """Stores the waiting chunks (the first ``most``); each leaves the list
        only once stored, so a failed store is sent again with the same effect."""
        if not self._pending:
            return
        if self._pending[0]["n"] == self._short:
            first = self._pending[0]
            await self.bucket.chunks.replace_one({"files_id": self.file_id, "n": first["n"]}, first, upsert=True)
            self._short = None
            self._pending = self._pending[1:]
        # A chunk written before a retry is already there (the same bytes); a
        # write-concern error is a failure, or an upload would have a silent hole.
        batch = self._pending if most is None else self._pending[:most]
        if batch:
            await insert_new(self.bucket.chunks, batch)
        self._pending = self._pending[len(batch) :]


class ChunkReader:
    """Reads a file from any byte offset with ``read(n)``, a few chunks per reply,
    and reopens its cursor if the server dropped it (a cursor idle for 10
    minutes, say, while a job was paused)."""

    def __init__(self, chunks: AsyncCollection, file_doc: dict[str, Any], offset: int, end: int | None = None) -> None:
        self._chunks = chunks
        self.file_id = file_doc["_id"]
        self.length: int = file_doc["length"]
        self._size: int = file_doc["chunkSize"]
        self.position = min(offset, self.length)
        self._end = self.length if end is None else min(end, self.length)
        self._buffer = b""
        self._cursor: AsyncCursor | None = None

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at the end."""
        while not self._buffer and self.position < self._end:
            self._buffer = await self._next_chunk_bytes()
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return piece

    async def _next_chunk_bytes(self) -> bytes:
        n, skip = divmod(self.position, self._size)
        if self._cursor is None:
            self._cursor = self._chunks.find(
                {"files_id": self.file_id, "n": {"$gte": n}}, sort=[("n", 1)], batch_size=CHUNKS_PER_READ
            )
        try:
            chunk = await self._cursor.next()
        except StopAsyncIteration:
            raise CorruptGridFile(f"file {self.file_id}: chunk {n} is missing") from None
        except OperationFailure as exc:
            if exc.code != CURSOR_NOT_FOUND:
                raise
            await self.close()
            return await self._next_chunk_bytes()
        if chunk["n"] != n:
            raise CorruptGridFile(f"file {self.file_id}: expected chunk {n}, found {chunk['n']}")
        data = bytes(chunk["data"])[skip : skip + self._end - self.position]
        self.position += len(data)
        return data

    async def close(self) -> None:
        if self._cursor is not None:
            cursor, self._cursor = self._cursor, None
            await cursor.close()


async def store_stream(
    bucket: Bucket,
    filename: str,
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    metadata: dict[str, Any],
    observe: Callable[[bytes], None] | None = None,
) -> StoredFile:
    """Writes ``chunks`` to a new file. Past ``max_bytes`` the partial file is
    deleted and PayloadTooLarge is raised; any other failure, a client
    disconnect included, also leaves nothing behind."""
    writer = bucket.writer(ObjectId(), filename, metadata)
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(
                    f"The upload is larger than the limit of {max_bytes} bytes (MAX_UPLOAD_BYTES).",
                    limit=max_bytes,
                )
            if observe is not None:
                observe(chunk)
            await writer.write(chunk)
        return await writer.close()
    except BaseException:
        await writer.abort()
        raise
