from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.settings import MongoSettings, Settings
from service.store.db import Database

from .support.authkit import Jwks, SigningKey, auth_settings
from .support.devdb import DevDatabase, database_server, with_database
from .support.index_coverage import QueryRecorder
from .support.openapi_check import ResponseChecker

# Every filter the apps of this test run send, checked after each test: each
# must be served by an index on MongoDB (see index_coverage.py).
SUITE_QUERIES = QueryRecorder()


@pytest.fixture(scope="session")
def db_server() -> Iterator[tuple[str, DevDatabase | None]]:
    with database_server() as server:
        yield server


@pytest.fixture(autouse=True)
def database_survives(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test under which the suite's FerretDB died, with its log, and
    starts it again (same port and data) so the tests after it still run."""
    yield
    if "db_server" not in request.fixturenames:
        return
    server = request.getfixturevalue("db_server")[1]
    why = server.died() if server is not None else None
    if why:
        server.start()
        pytest.fail(why, pytrace=False)


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mongo(db_server, db_name) -> MongoSettings:
    return MongoSettings(uri=with_database(db_server[0], db_name), database=db_name)


@pytest.fixture
def settings(mongo) -> Settings:
    # A lease long enough for FerretDB's slowest single write on a busy machine
    # (a data write gets the lease's remaining time as its deadline).
    # Authentication is off so every test may use the plain client; the auth
    # tests build apps with it on (auth_client, make_client(**auth_settings(...))).
    # JOB_WORKERS=2 scripts/test runs the suite with imports built in worker processes.
    workers = int(os.environ.get("JOB_WORKERS", "1"))
    return Settings(
        mongo=mongo,
        job_poll_seconds=0.2,
        job_lease_seconds=10.0,
        shutdown_grace_seconds=5.0,
        job_workers=workers,
        auth_disabled=True,
    )


@pytest.fixture
async def db(mongo) -> AsyncIterator[Database]:
    """A connection of the test's own, to look at what the service wrote; the
    database is dropped after the test.

    The apps a test builds close before the drop whatever order it names its
    fixtures in: ``aiohttp_client`` and ``aiohttp_server`` (below) are set up
    after ``db``, so they are torn down before it. (FerretDB on SQLite dies of
    SIGBUS when a database is dropped while a job still writes to it: a CI run
    lost its database that way.)"""
    database = Database.connect(mongo, timeout_seconds=None)
    yield database
    try:
        running = running_job_tasks()
        assert not running, f"an app still runs jobs when its database is to be dropped: {running}"
        await database.client.drop_database(mongo.database)
    finally:
        await database.close()


@pytest.fixture
def aiohttp_client(db, aiohttp_client):
    """pytest-aiohttp's ``aiohttp_client``, set up after ``db``: its apps close
    before the test's database is dropped."""
    return aiohttp_client


@pytest.fixture
def aiohttp_server(db, aiohttp_server):
    """pytest-aiohttp's ``aiohttp_server``, set up after ``db`` (see above)."""
    return aiohttp_server


@pytest.fixture
def openapi_checker() -> Iterator[ResponseChecker]:
    """Every response the test's clients receive is checked against the
    OpenAPI document; the test fails on any mismatch."""
    checker = ResponseChecker()
    yield checker
    assert not checker.failures, "responses that do not match the OpenAPI document:\n" + "\n".join(checker.failures)


@pytest.fixture
def make_client(aiohttp_client, settings, openapi_checker) -> Callable[..., Awaitable[TestClient]]:
    async def make(**overrides: Any) -> TestClient:
        return openapi_checker.watch(
            await aiohttp_client(create_app(settings.replace(**overrides), command_listeners=[SUITE_QUERIES]))
        )

    return make


@pytest.fixture
async def client(make_client) -> TestClient:
    return await make_client()


@pytest.fixture(autouse=True)
async def no_job_task_left_behind() -> AsyncIterator[None]:
    yield
    leftovers = running_job_tasks()
    assert not leftovers, f"tasks still running after the test: {leftovers}"


def running_job_tasks() -> list[asyncio.Task]:
    """The service's job tasks (the manager, runners, sweeps) still running."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("job") and not t.done()]


@pytest.fixture(autouse=True)
def every_query_has_an_index() -> Iterator[None]:
    """Fails the test that first sends a filter no index serves, naming it."""
    SUITE_QUERIES.take_new()
    yield
    problems = SUITE_QUERIES.unserved(SUITE_QUERIES.take_new())
    assert not problems, "queries without an index:\n" + "\n".join(problems)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a whole run of the in-process tests, every declared index must
    have served some query: an unused index only slows writes."""
    config = session.config
    whole = (
        not config.option.keyword
        and not config.option.markexpr
        and config.args in ([], ["tests"], [str(config.rootpath / "tests")])
    )
    if not whole or exitstatus != 0 or not SUITE_QUERIES.seen:
        return
    unused = SUITE_QUERIES.unused_indexes()
    if unused:
        print(f"\nindexes no query of the test suite used: {', '.join(unused)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def idp_key() -> SigningKey:
    return SigningKey.rsa("key-1")


@pytest.fixture
async def jwks(aiohttp_server, idp_key) -> Jwks:
    """A local identity provider's JWKS endpoint, serving ``idp_key``."""
    provider = Jwks([idp_key])
    provider.server = await aiohttp_server(provider.app())
    return provider


@pytest.fixture
async def auth_client(make_client, jwks) -> TestClient:
    """The real app with authentication on: JWTs checked against ``jwks``, API keys."""
    return await make_client(**auth_settings(jwks.url))
