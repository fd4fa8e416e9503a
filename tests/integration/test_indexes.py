"""Every query has an index on MongoDB: ensure_indexes creates exactly the
declared ones, and the suite-wide recorder (tests/conftest.py) names any
filter none of them serves."""

from __future__ import annotations

from service.store.db import INDEXES, Database

from ..support.index_coverage import QueryRecorder


async def test_ensure_indexes_creates_exactly_the_declared_indexes(client, db):
    await db.ensure_indexes()
    for collection, declared in INDEXES.items():
        found = {i["name"]: list(i["key"].items()) async for i in await db.db[collection].list_indexes()}
        assert found == {"_id_": [("_id", 1)], **{name: keys for name, keys in declared}}, collection
    chunks = {i["name"] async for i in await db.uploads.chunks.list_indexes()}
    assert chunks == {"_id_", "files_id_1_n_1"}
    files = {i["name"] async for i in await db.uploads.files.list_indexes()}
    assert files <= {"_id_"}  # an org's stored bytes are its reservations, not a query on files


async def test_a_query_no_index_serves_is_named_with_its_collection_and_filter(mongo):
    recorder = QueryRecorder()
    database = Database.connect(mongo, event_listeners=[recorder])
    try:
        await database.users.find_one({"phone": "+12015550123"})
        await database.teams.find_one({"org_id": "a", "job_id": "j"})
        await database.jobs.count_documents({"$or": [{"state": "queued"}, {"org_id": "a"}]})
        await database.jobs.count_documents({"$or": [{"state": "queued"}, {"kind": "import"}]})
        problems = recorder.unserved(recorder.take_new())
    finally:
        await database.close()
    assert len(problems) == 2, problems
    jobs, users = sorted(problems)
    assert users.startswith("users: filter ") and '"phone"' in users and "served by no index" in users
    assert jobs.startswith("jobs: filter ") and '"kind"' in jobs
