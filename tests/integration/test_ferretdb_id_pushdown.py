"""Filters on _id give MongoDB's answers on the development database, whose
SQLite backend pre-filters them with the _id index (scripts/ferretdb/
id_pushdown.go): equality, $in and string ranges over a collection whose
_ids mix strings (with characters JSON escapes or that sort around the
quote), ints, longs, doubles and ObjectIds, for find, count_documents,
update_one, update_many, find_one_and_update and delete_many. Expected
answers come from MongoDB's rules, written out below: a range with string
bounds matches only strings (compared by UTF-8 bytes), numbers equal across
int, long and double, an ObjectId never equals a string."""

from __future__ import annotations

import pytest
from bson import Int64, ObjectId
from pymongo import ReturnDocument

OID = ObjectId("0102030405060708090a0b0c")
OTHER_OID = ObjectId("0102030405060708090a0b0d")

STRINGS = [
    "",
    "a",
    "a ",
    "a!",
    'a"',
    "a#",
    "a\\",
    "a<b",
    "a>",
    "a&",
    "a\n",
    "a\x00",
    "a\u2028",
    "a\x7f",
    "aé",
    "a😀",
    "ab",
    "b",
    '"',
    "\\",
    "z",
    "~",
    "é",
    "\u2028",
    "\u2028x",
    *(f"org/ds/job:{i:010d}" for i in range(1, 21)),
    "org/ds/job;",
    "org/ds/jobs",
    "org/other/job:0000000001",
]
NUMBERS = [1, 2, -3, 0, Int64(2**40), 7.0, 2.5]
IDS = [*STRINGS, *NUMBERS, OID]


def kind(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, ObjectId):
        return "objectId"
    return type(value).__name__


def key(value):
    return value.encode() if isinstance(value, str) else value


def mongo_matches(doc_id, cond) -> bool:
    """MongoDB's answer for an _id condition (no arrays: an _id is never one)."""
    if not (isinstance(cond, dict) and cond and next(iter(cond)).startswith("$")):
        return kind(doc_id) == kind(cond) and key(doc_id) == key(cond)
    for op, arg in cond.items():
        if op == "$eq":
            ok = mongo_matches(doc_id, arg)
        elif op == "$ne":
            ok = not mongo_matches(doc_id, arg)
        elif op == "$in":
            ok = any(mongo_matches(doc_id, v) for v in arg)
        else:
            if kind(doc_id) != kind(arg):
                return False
            a, b = key(doc_id), key(arg)
            ok = {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]
        if not ok:
            return False
    return True


CASES = [
    "a",
    'a"',
    "a\u2028",
    "a\x00",
    "",
    "org/ds/job:0000000007",
    "missing",
    1,
    Int64(1),
    1.0,
    7,
    Int64(7),
    2.5,
    0,
    -0.0,
    Int64(2**40),
    float(2**40),
    OID,
    str(OID),
    OTHER_OID,
    {"$eq": "a"},
    {"$eq": 7},
    {"$in": ["a", 1, OID, 7, "missing", "a<b"]},
    {"$in": [str(OID), 2.0, Int64(-3)]},
    {"$in": []},
    {"$in": ["a", None]},
    {"$gte": "a", "$lt": "b"},
    {"$gt": "a", "$lte": "ab"},
    {"$gt": "a"},
    {"$gte": "a!"},
    {"$lt": "a!"},
    {"$lte": 'a"'},
    {"$lt": "a"},
    {"$lt": "a1"},
    {"$gte": "z"},
    {"$gt": "~"},
    {"$gte": "a", "$lte": "a"},
    {"$gte": "a\u2028"},
    {"$lt": "a\\"},
    {"$gte": "a<", "$lt": "a>"},
    {"$gte": "org/ds/job:0000000005", "$lt": "org/ds/job:0000000010"},
    {"$gte": "org/ds/job:", "$lt": "org/ds/job;"},
    {"$gt": "org/ds/job:0000000019"},
    {"$gte": "z", "$lt": "a"},
    {"$gte": "", "$lt": "\U0010ffff"},
    {"$gte": "a", "$lt": 5},
    {"$gt": 1},
    {"$gte": 0, "$lt": 3},
    {"$gte": "a", "$in": ["a", "b", 1]},
    {"$gte": "b", "$ne": "z"},
]


def label(case) -> str:
    return repr(case)


@pytest.fixture
async def coll(db):
    collection = db.db["id_pushdown"]
    await collection.insert_many([{"_id": doc_id, "n": 0} for doc_id in IDS])
    return collection


def expected(cond) -> list:
    return [doc_id for doc_id in IDS if mongo_matches(doc_id, cond)]


def same(a, b) -> bool:
    return kind(a) == kind(b) and key(a) == key(b)


def as_set(ids) -> set:
    return {(kind(i), key(i)) for i in ids}


@pytest.mark.parametrize("cond", CASES, ids=[label(c) for c in CASES])
async def test_id_filters_give_mongodbs_answers(coll, cond):
    want = expected(cond)
    flt = {"_id": cond}

    found = [doc["_id"] async for doc in coll.find(flt)]
    assert len(found) == len(want) and as_set(found) == as_set(want)
    assert await coll.count_documents(flt) == len(want)
    # with another condition beside it
    assert await coll.count_documents({**flt, "n": 0}) == len(want)
    assert await coll.count_documents({**flt, "n": 1}) == 0

    # every match is updated exactly once
    result = await coll.update_many(flt, {"$inc": {"n": 1}})
    assert (result.matched_count, result.modified_count) == (len(want), len(want))
    counts = {(kind(d["_id"]), key(d["_id"])): d["n"] async for d in coll.find({})}
    assert counts == {(kind(i), key(i)): int(any(same(i, w) for w in want)) for i in IDS}

    result = await coll.update_one(flt, {"$inc": {"n": 1}})
    assert result.matched_count == min(1, len(want))
    before = await coll.find_one_and_update(flt, {"$inc": {"n": 10}}, return_document=ReturnDocument.BEFORE)
    if want:
        assert any(same(before["_id"], w) for w in want)
    else:
        assert before is None

    result = await coll.delete_many(flt)
    assert result.deleted_count == len(want)
    left = [doc["_id"] async for doc in coll.find({})]
    assert as_set(left) == as_set(i for i in IDS if not any(same(i, w) for w in want))


async def test_id_filters_are_served_by_the_id_index_on_ferretdb(coll, db):
    """On FerretDB, its explain shows the SQLite plan: each of these filters
    is answered from the _id index, not by scanning the table."""
    info = await db.db.command("buildInfo")
    if "ferretdbVersion" not in info:
        pytest.skip("MongoDB: its own planner, not FerretDB's pushdown")
    for cond in ["a", 7, OID, {"$in": ["a", 1, OID]}, {"$gte": "org/ds/job:0000000005", "$lt": "org/ds/job:0000000010"}]:
        plan = await db.db.command("explain", {"find": "id_pushdown", "filter": {"_id": cond}})
        assert plan.get("filterPushdown") is True, (cond, plan)
        details = plan["queryPlanner"]["Plan"]
        assert details and not any("SCAN" in line for line in details), (cond, details)
        assert any("USING INDEX" in line for line in details), (cond, details)
