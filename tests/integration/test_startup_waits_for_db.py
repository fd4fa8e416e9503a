"""A replica that starts while the database is away waits for it (for up to
DB_RETRY_SECONDS) instead of exiting: found by the chaos run with overlapping
faults, where a replica restarted during a database restart exited with 1
and, in a pod, would have gone into CrashLoopBackOff."""

from __future__ import annotations

import pytest
from aiohttp import web
from pymongo.errors import AutoReconnect, OperationFailure

from service.store import db as db_module
from service.typedefs import DB_LISTENERS_KEY, SETTINGS_KEY


async def test_a_replica_started_while_the_database_is_away_waits_for_it(make_client, db, monkeypatch):
    real = db_module.Database.ensure_indexes
    tries = 0

    async def ensure_indexes(self) -> None:
        nonlocal tries
        tries += 1
        if tries <= 2:
            raise AutoReconnect("127.0.0.1:27017: connection closed")
        await real(self)

    monkeypatch.setattr(db_module.Database, "ensure_indexes", ensure_indexes)
    monkeypatch.setattr(db_module, "START_RETRY_SECONDS", 0.01)
    client = await make_client()
    assert tries == 3
    assert (await client.get("/readyz")).status == 200


async def start_up(settings) -> None:
    """The app's database set-up alone (its cleanup_ctx), as a start runs it."""
    app = web.Application()
    app[SETTINGS_KEY], app[DB_LISTENERS_KEY] = settings, []
    await anext(db_module.database_ctx(app))


async def test_a_database_that_refuses_what_start_up_asks_stops_the_start_at_once(settings, db, monkeypatch):
    tries = 0

    async def ensure_indexes(self) -> None:
        nonlocal tries
        tries += 1
        raise OperationFailure("not authorized on collect to execute command", 13)

    monkeypatch.setattr(db_module.Database, "ensure_indexes", ensure_indexes)
    with pytest.raises(OperationFailure):
        await start_up(settings)
    assert tries == 1


async def test_a_database_still_away_after_db_retry_seconds_stops_the_start(settings, db, monkeypatch):
    async def ensure_indexes(self) -> None:
        raise AutoReconnect("127.0.0.1:27017: connection refused")

    monkeypatch.setattr(db_module.Database, "ensure_indexes", ensure_indexes)
    monkeypatch.setattr(db_module, "START_RETRY_SECONDS", 0.01)
    with pytest.raises(AutoReconnect):
        await start_up(settings.replace(db_retry_seconds=0.2))
