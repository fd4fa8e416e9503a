"""The database: one AsyncMongoClient, the collections the service uses, their indexes."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from aiohttp import web
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from ..settings import MongoSettings
from .files import Bucket
from ..typedefs import DB_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)

class Database:
    """Named handles to the collections and GridFS buckets of one MongoDB database."""

    def __init__(self, client: AsyncMongoClient, name: str) -> None:
        self.client = client
        self.db: AsyncDatabase = client[name]
        self.jobs: AsyncCollection = self.db["jobs"]
        self.job_progress: AsyncCollection = self.db["job_progress"]
        self.records: AsyncCollection = self.db["records"]
        self.teams: AsyncCollection = self.db["teams"]
        self.users: AsyncCollection = self.db["users"]
        self.undo: AsyncCollection = self.db["undo_log"]
        self.uploads = Bucket(self.db, "uploads")
        self.exports = Bucket(self.db, "exports")

    @classmethod
    def connect(cls, mongo: MongoSettings, timeout_seconds: float | None = 30.0, **client_options: object) -> Database:
        """Every operation has a deadline (``timeoutMS``), so a half-open
        connection cannot hang a job or the lease loop; writes are acknowledged
        by a majority of the replica set unless the URI says otherwise (``w=``).
        ``timeout_seconds=None``: no deadline (the tests' own connection, whose
        ``distinct`` FerretDB 1.24 rejects with any maxTimeMS)."""
        options: dict[str, object] = {} if timeout_seconds is None else {"timeoutMS": int(timeout_seconds * 1000)}
        if "w=" not in urlsplit(mongo.uri).query:
            options["w"] = "majority"
        client: AsyncMongoClient = AsyncMongoClient(
            mongo.uri,
            tz_aware=True,
            appname="collect-jobs",
            serverSelectionTimeoutMS=5000,
            **{**options, **client_options},
        )
        return cls(client, mongo.database)

    async def ping(self) -> None:
        await self.db.command("ping")

    async def ensure_indexes(self) -> None:
        await self.uploads.ensure_indexes()
        await self.exports.ensure_indexes()
        await self.jobs.create_index([("state", ASCENDING), ("_id", ASCENDING)], name="state_id")
        await self.jobs.create_index([("org_id", ASCENDING), ("_id", DESCENDING)], name="org_newest")
        await self.jobs.create_index(
            [("org_id", ASCENDING), ("kind", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)], name="org_kind_state_id"
        )
        # Jobs that need a runner and have none (the sweep of unowned jobs).
        await self.jobs.create_index([("state", ASCENDING), ("owner", ASCENDING), ("_id", ASCENDING)], name="state_owner")
        # Held leases, by expiry (the orphan sweep); released leases have none.
        await self.job_progress.create_index([("lease_until", ASCENDING)], name="lease_until")
        # records has no secondary index on purpose: _ids are
        # "org/dataset/job:row", so an export is an _id prefix range and a
        # rollback a narrower one, both on the primary key. Every index would
        # slow every insert.

    async def close(self) -> None:
        await self.client.close()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: connect and create indexes before serving; close last."""
    settings = app[SETTINGS_KEY]
    database = Database.connect(settings.mongo, settings.db_timeout_seconds)
    try:
        await database.ensure_indexes()
    except Exception:
        await database.close()
        raise
    app[DB_KEY] = database
    log.info("connected to database %r", settings.mongo.database)
    yield
    await database.close()
