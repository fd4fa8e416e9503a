"""Uploads stored in GridFS and read back from any offset, against the real database."""
from __future__ import annotations

import os

import pytest

from service.errors import PayloadTooLarge
from service.store.db import UPLOAD_CHUNK_BYTES
from service.store.files import store_stream


async def chunks_of(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_a_stored_file_reads_back_exactly_from_any_offset(db):
    data = os.urandom(3 * UPLOAD_CHUNK_BYTES + 12345)
    stored = await store_stream(db.uploads, "x.bin", chunks_of(data, 50_000), max_bytes=10**8, metadata={})
    assert stored.size == len(data)
    for offset in (0, 1, UPLOAD_CHUNK_BYTES - 1, UPLOAD_CHUNK_BYTES, 2 * UPLOAD_CHUNK_BYTES + 7, len(data) - 1, len(data)):
        for read_size in (1000, UPLOAD_CHUNK_BYTES, 10**6):
            reader = await db.open_upload(stored.file_id, offset)
            got = bytearray()
            while piece := await reader.read(read_size):
                assert len(piece) <= read_size
                got += piece
            await reader.close()
            assert bytes(got) == data[offset:], (offset, read_size)


async def test_an_upload_over_the_limit_leaves_no_chunks(db):
    with pytest.raises(PayloadTooLarge):
        await store_stream(db.uploads, "x.bin", chunks_of(b"x" * 600_000, 100_000), max_bytes=500_000, metadata={})
    assert await db.db["uploads.files"].count_documents({}) == 0
    assert await db.db["uploads.chunks"].count_documents({}) == 0
