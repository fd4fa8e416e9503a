"""Streaming request bodies into GridFS, never holding a whole file in memory."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import OperationFailure

from ..errors import PayloadTooLarge

CURSOR_NOT_FOUND = 43
# Chunks per reply: bounded, because a server may otherwise answer a getMore
# with more than its own maximum message size (FerretDB 1.24 did, at 65 MB).
CHUNKS_PER_BATCH = 8


@dataclass(frozen=True)
class StoredFile:
    file_id: ObjectId
    size: int


async def store_stream(
    bucket: AsyncGridFSBucket,
    filename: str,
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    metadata: dict[str, Any],
    observe: Callable[[bytes], None] | None = None,
) -> StoredFile:
    """Writes ``chunks`` to a new GridFS file. Past ``max_bytes`` the partial file
    is aborted (its chunks deleted) and PayloadTooLarge is raised; any other
    failure, a client disconnect included, also leaves nothing behind."""
    stream = bucket.open_upload_stream(filename, metadata=metadata)
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
            await stream.write(chunk)
    except BaseException:
        await stream.abort()
        raise
    await stream.close()
    return StoredFile(stream._id, size)


async def delete_file(bucket: AsyncGridFSBucket, file_id: ObjectId | None) -> None:
    if file_id is None:
        return
    try:
        await bucket.delete(file_id)
    except NoFile:
        pass


class ChunkReader:
    """Reads a GridFS file from any byte offset with ``read(n)``, holding at most a
    few chunks in memory. PyMongo's GridOut cannot bound its cursor's batch size;
    this can, and it reopens its cursor if the server dropped it (a cursor idle
    for 10 minutes, say, while a job was paused)."""

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
                {"files_id": self.file_id, "n": {"$gte": n}}, sort=[("n", 1)], batch_size=CHUNKS_PER_BATCH
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


async def open_reader(bucket_files: AsyncCollection, chunks: AsyncCollection, file_id: Any, offset: int = 0, end: int | None = None) -> ChunkReader:
    doc = await bucket_files.find_one({"_id": file_id})
    if doc is None:
        raise NoFile(f"no file {file_id}")
    return ChunkReader(chunks, doc, offset, end)
