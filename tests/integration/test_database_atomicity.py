"""The development database keeps MongoDB's single-document atomicity, which
the job engine's guarded transitions rely on (scripts/ferretdb/ patches
FerretDB 1.24, whose updates are otherwise a separate read and write)."""

from __future__ import annotations

import asyncio

from pymongo import ReturnDocument

from service.store.db import Database

ROUNDS = 50


async def test_two_clients_racing_one_guarded_update_never_both_win(mongo, db):
    other = Database.connect(mongo)
    try:
        both_won = 0
        for i in range(ROUNDS):
            await db.jobs.insert_one({"_id": f"race-{i}", "state": "queued", "epoch": 0})

            async def claim(database: Database, who: str):
                return await database.jobs.find_one_and_update(
                    {"_id": f"race-{i}", "state": "queued"},  # noqa: B023 (called within this iteration)
                    {"$set": {"state": "running", "owner": who}, "$inc": {"epoch": 1}},
                    return_document=ReturnDocument.AFTER,
                )

            a, b = await asyncio.gather(claim(db, "a"), claim(other, "b"))
            both_won += bool(a and b)
            final = await db.jobs.find_one({"_id": f"race-{i}"})
            assert final["epoch"] == 1, final
        assert both_won == 0
    finally:
        await other.close()


async def test_concurrent_updates_of_different_fields_are_both_kept(mongo, db):
    other = Database.connect(mongo)
    try:
        for i in range(ROUNDS):
            await db.jobs.insert_one({"_id": f"both-{i}", "a": 0, "b": 0})
            await asyncio.gather(
                db.jobs.update_one({"_id": f"both-{i}"}, {"$set": {"a": 1}}),
                other.jobs.update_one({"_id": f"both-{i}"}, {"$set": {"b": 1}}),
            )
            doc = await db.jobs.find_one({"_id": f"both-{i}"})
            assert (doc["a"], doc["b"]) == (1, 1), doc
    finally:
        await other.close()
