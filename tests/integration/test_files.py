"""Uploads stored in GridFS and read back from any offset, against the real database."""

from __future__ import annotations

import os

import pytest
from bson import ObjectId

from service.errors import PayloadTooLarge
from service.store.files import CHUNK_BYTES as UPLOAD_CHUNK_BYTES
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
            reader = await db.uploads.reader(stored.file_id, offset)
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


async def test_the_writer_stores_chunks_as_it_goes_and_shows_the_file_only_when_closed(db):
    writer = db.uploads.writer(ObjectId(), "x.bin", {})
    for _ in range(10):
        await writer.write(os.urandom(UPLOAD_CHUNK_BYTES))
    # Never more than a few chunks in memory: most are in the database already.
    assert await db.db["uploads.chunks"].count_documents({"files_id": writer.file_id}) >= 8
    assert await db.uploads.file(writer.file_id) is None
    stored = await writer.close()
    assert stored.size == 10 * UPLOAD_CHUNK_BYTES
    assert (await db.uploads.file(writer.file_id))["length"] == stored.size


async def test_deleting_a_partial_file_removes_its_orphan_chunks(db):
    writer = db.exports.writer(ObjectId(), "x.csv", {})
    await writer.write(os.urandom(6 * UPLOAD_CHUNK_BYTES))  # chunks, but no files document yet
    assert await db.db["exports.chunks"].count_documents({}) > 0
    await db.exports.delete(writer.file_id)
    assert await db.db["exports.chunks"].count_documents({}) == 0


async def send(op):
    return await op()


async def read_all(bucket, file_id) -> bytes:
    reader = await bucket.reader(file_id)
    got = bytearray()
    while piece := await reader.read(10**6):
        got += piece
    await reader.close()
    return bytes(got)


@pytest.mark.parametrize("own", [False, True], ids=["another-writers-file", "its-own-file"])
async def test_a_synced_file_is_continued_byte_for_byte_after_more_was_written_past_the_sync(db, own):
    data = os.urandom(5 * UPLOAD_CHUNK_BYTES + 999)
    synced = 2 * UPLOAD_CHUNK_BYTES + 4321  # a short last chunk
    first = db.exports.writer("job:00000001", "x.csv", {})
    await first.write(data[:synced])
    assert await first.sync() == synced
    assert await db.exports.file(first.file_id) is None  # stored, and still no file to read
    # The first writer went on past its sync (filling the short chunk) and died.
    await first.write(data[synced : synced + 2 * UPLOAD_CHUNK_BYTES])
    await first.sync()

    second = db.exports.writer(first.file_id if own else "job:00000002", "x.csv", {})
    assert await second.resume(first.file_id, synced, send)
    assert second.written == synced
    await second.write(data[synced:])
    stored = await second.close()
    assert stored.size == len(data) and await read_all(db.exports, second.file_id) == data


async def test_resuming_from_a_file_that_lacks_the_synced_bytes_starts_an_empty_file(db):
    first = db.exports.writer("job:00000001", "x.csv", {})
    await first.write(os.urandom(3 * UPLOAD_CHUNK_BYTES))
    await first.sync()
    await db.db["exports.chunks"].delete_one({"files_id": first.file_id, "n": 1})
    second = db.exports.writer("job:00000002", "x.csv", {})
    assert not await second.resume(first.file_id, 3 * UPLOAD_CHUNK_BYTES, send)
    assert second.written == 0
    assert await db.db["exports.chunks"].count_documents({"files_id": second.file_id}) == 0
