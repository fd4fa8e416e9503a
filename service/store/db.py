"""The database: one AsyncMongoClient, the collections the service uses, their indexes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from ..settings import MongoSettings
from ..typedefs import DB_KEY, DB_LISTENERS_KEY, SETTINGS_KEY
from .files import Bucket

log = logging.getLogger(__name__)

# Every index the service needs, by collection, and why; ensure_indexes creates
# exactly these (and the GridFS buckets' own). tests/support/index_coverage.py checks
# every filter the test suite sends against this table: each must be served by
# the _id index or by one of these, and each of these must serve some filter.
INDEXES: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {
    "jobs": [
        # the queue, oldest first
        ("state_id", [("state", ASCENDING), ("_id", ASCENDING)]),
        # jobs that need a runner and have none (the sweep of unowned jobs)
        ("state_owner", [("state", ASCENDING), ("owner", ASCENDING), ("_id", ASCENDING)]),
        # the retention sweeps: finished jobs by age
        ("state_finished", [("state", ASCENDING), ("finished_at", ASCENDING)]),
        # GET /jobs, newest first
        ("org_newest", [("org_id", ASCENDING), ("_id", DESCENDING)]),
        # admission slots per org and kind, oldest first; a dataset's imports
        ("org_kind_state_id", [("org_id", ASCENDING), ("kind", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)]),
        # the retention sweep: the export job that writes a file without a files document
        ("file", [("params.file_id", ASCENDING)]),
    ],
    # held leases, by expiry (the orphan sweep); released leases have none
    "job_progress": [("lease_until", [("lease_until", ASCENDING)])],
    # a teams job's rollback finds what it created by its tag
    "teams": [("org_job", [("org_id", ASCENDING), ("job_id", ASCENDING)])],
    "users": [("org_job_id", [("org_id", ASCENDING), ("job_id", ASCENDING), ("_id", ASCENDING)])],
    # every request with an API key looks it up by its hash (unique); an org's keys, newest first
    "api_keys": [("hash", [("hash", ASCENDING)]), ("org_newest", [("org_id", ASCENDING), ("_id", DESCENDING)])],
    # the audit queries: an org's events newest first, optionally by job, actor or action
    "audit_events": [
        ("org_newest", [("org_id", ASCENDING), ("_id", DESCENDING)]),
        *(
            (f"org_{field}_newest", [("org_id", ASCENDING), (field, ASCENDING), ("_id", DESCENDING)])
            for field in ("job_id", "actor", "action")
        ),
        # a job's history includes the bulk actions that listed it (multikey)
        ("org_job_ids_newest", [("org_id", ASCENDING), ("job_ids", ASCENDING), ("_id", DESCENDING)]),
    ],
    # records has no secondary index on purpose: _ids are "org/dataset/job:row",
    # so an export is an _id prefix range and a rollback a narrower one, both on
    # the primary key. Every index would slow every insert.
}

UNIQUE_INDEXES = frozenset({("api_keys", "hash")})
# Expiry fields with a TTL index (or, where the server has none, a plain index
# the service's own expiry sweep uses).
TTL_FIELDS = {"idempotency_keys": "created_at", "download_tickets": "expires_at"}


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
        self.idempotency_keys: AsyncCollection = self.db["idempotency_keys"]
        self.download_tickets: AsyncCollection = self.db["download_tickets"]
        # Keyed by "org/dataset": every read is a primary-key lookup, no index needed.
        self.profiles: AsyncCollection = self.db["dataset_profiles"]
        self.api_keys: AsyncCollection = self.db["api_keys"]
        self.audit: AsyncCollection = self.db["audit_events"]
        # Limits held by orgs, keyed by "org/scope" (service/jobs/reservations.py):
        # every read and write is a primary-key lookup.
        self.reservations: AsyncCollection = self.db["reservations"]
        self.uploads = Bucket(self.db, "uploads")
        self.exports = Bucket(self.db, "exports")
        # Whether the server stores BSON Decimal128; FerretDB 1.24 does not (it
        # drops the connection), so there a decimal column holds exact decimal text.
        self.decimal128 = True
        self.ttl_indexes = True  # False on a server without TTL indexes (FerretDB 1.24)

    @classmethod
    def connect(cls, mongo: MongoSettings, timeout_seconds: float | None = 30.0, **client_options: Any) -> Database:
        """Every operation has a deadline (``timeoutMS``), so a half-open
        connection cannot hang a job or the lease loop; writes are acknowledged
        by a majority of the replica set unless the URI says otherwise (``w=``).
        ``timeout_seconds=None``: no deadline (the tests' own connection, whose
        ``distinct`` FerretDB 1.24 rejects with any maxTimeMS)."""
        options: dict[str, Any] = {} if timeout_seconds is None else {"timeoutMS": int(timeout_seconds * 1000)}
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

    async def detect_features(self) -> None:
        info = await self.db.command("buildInfo")
        self.decimal128 = "ferretdbVersion" not in info

    async def ping(self) -> None:
        await self.db.command("ping")

    async def ensure_indexes(self) -> None:
        await self.uploads.ensure_indexes()
        await self.exports.ensure_indexes()
        for collection, indexes in INDEXES.items():
            for name, keys in indexes:
                await self.db[collection].create_index(keys, name=name, unique=(collection, name) in UNIQUE_INDEXES)
        # Looked up by _id ("org/key", tickets by their token); the TTL
        # indexes only remove what has expired.
        await self._ttl_index(self.idempotency_keys, "created_at", 24 * 3600)
        await self._ttl_index(self.download_tickets, "expires_at", 0)

    async def _ttl_index(self, collection: AsyncCollection, field: str, seconds: int) -> None:
        try:
            await collection.create_index([(field, ASCENDING)], name="ttl", expireAfterSeconds=seconds)
        except OperationFailure as exc:
            if exc.code != 238:  # NotImplemented: FerretDB 1.24 has no TTL indexes
                raise
            await collection.create_index([(field, ASCENDING)], name=field)
            self.ttl_indexes = False

    async def expire(self, collection: AsyncCollection, field: str, before: object) -> None:
        """Deletes what a TTL index would have, where the server has none;
        readers check expiry themselves either way (MongoDB's TTL monitor
        runs only once a minute)."""
        if not self.ttl_indexes:
            await collection.delete_many({field: {"$lt": before}})

    async def close(self) -> None:
        await self.client.close()


# A replica that starts while the database is away (restarting, failing
# over) waits for it, this long between tries, for up to DB_RETRY_SECONDS:
# exiting would leave a Kubernetes pod in CrashLoopBackOff, minutes longer
# than the outage.
START_RETRY_SECONDS = 1.0


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: connect and create indexes before serving; close last."""
    settings = app[SETTINGS_KEY]
    database = Database.connect(settings.mongo, settings.db_timeout_seconds, event_listeners=app[DB_LISTENERS_KEY])
    deadline = time.monotonic() + settings.db_retry_seconds
    try:
        while True:
            try:
                await database.ensure_indexes()
                await database.detect_features()
                break
            except PyMongoError as exc:
                if not (isinstance(exc, ConnectionFailure) or exc.timeout) or time.monotonic() >= deadline:
                    raise
                log.warning("the database is not reachable yet (%s); trying again in %g s", exc, START_RETRY_SECONDS)
                await asyncio.sleep(START_RETRY_SECONDS)
    except BaseException:
        await database.close()
        raise
    app[DB_KEY] = database
    log.info("connected to database %r", settings.mongo.database)
    yield
    await database.close()
