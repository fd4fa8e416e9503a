"""The suite's fixtures cannot be asked for in a wrong order (issue 26): a
test that names aiohttp_client before db still has its apps closed before its
database is dropped (the db fixture's teardown fails if a job still runs)."""

from __future__ import annotations

from service.app import create_app

from ..support.helpers import make_csv, start_import, wait_for


async def test_an_app_named_before_db_is_closed_before_the_database_is_dropped(aiohttp_client, db, settings):
    client = await aiohttp_client(create_app(settings))
    job = await start_import(client, make_csv(50_000), batch_size=10)
    await wait_for(client, job["id"], lambda j: j["progress"].get("processed", 0) >= 10)
    # The job is still running as the test ends: db's teardown would find it
    # running had db been torn down first.
