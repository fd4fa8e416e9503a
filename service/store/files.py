"""Streaming request bodies into GridFS, never holding a whole file in memory."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile

from ..errors import PayloadTooLarge


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
