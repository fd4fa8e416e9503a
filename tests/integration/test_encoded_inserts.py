"""Pre-encoded inserts (service/store/writes.py insert_encoded), the import's
write path, against the real database: every document lands as encoded, a
batch is cut into commands by bytes, a replayed batch is harmless, and a
document the database rejects comes back with its index in the batch."""

from __future__ import annotations

import bson
from pymongo import monitoring

from service.store.db import Database
from service.store.writes import Encoded, insert_encoded


class Inserts(monitoring.CommandListener):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "insert":
            self.sizes.append(len(event.command["documents"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def docs(n: int, start: int = 0) -> list[dict]:
    return [{"_id": f"r{i:05d}", "row": i, "data": {"name": f"name {i:05d}", "note": "x" * 40}} for i in range(start, start + n)]


def test_bson_copies_an_encoded_document_as_it_is():
    doc = docs(1)[0]
    assert bson.encode({"documents": [Encoded(bson.encode(doc))]}) == bson.encode({"documents": [doc]})


async def test_a_batch_is_sent_in_commands_of_bounded_bytes_and_lands_exactly(mongo, db):
    listener = Inserts()
    database = Database.connect(mongo, event_listeners=[listener])
    try:
        batch = docs(50)
        per_doc = len(bson.encode(batch[0]))
        errors = await insert_encoded(database.records, [Encoded(bson.encode(d)) for d in batch], max_bytes=10 * per_doc)
        assert errors == []
        assert listener.sizes == [10] * 5
        stored = await db.records.find({}, sort=[("_id", 1)]).to_list()
        assert stored == batch
    finally:
        await database.close()


async def test_a_replayed_batch_inserts_nothing_twice_and_reports_no_error(db):
    first = docs(30)
    await insert_encoded(db.records, [Encoded(bson.encode(d)) for d in first])
    again = docs(40)  # the same 30 and ten more
    assert await insert_encoded(db.records, [Encoded(bson.encode(d)) for d in again]) == []
    assert await db.records.count_documents({}) == 40


async def test_a_rejected_document_comes_back_with_its_index_and_the_rest_land(db):
    batch = [Encoded(bson.encode(d)) for d in docs(5)]
    batch[3] = Encoded(bson.encode({"_id": [1, 2], "row": 3}))  # an array is never an _id
    errors = await insert_encoded(db.records, batch, max_bytes=2 * len(batch[0].raw))
    assert [e["index"] for e in errors] == [3], errors
    assert await db.records.count_documents({}) == 4
