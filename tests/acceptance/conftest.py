from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest

from ..support.devdb import with_database
from ..support.procs import ServiceProcess
from .api import Api


@pytest.fixture
def service_uri(db_server, db_name) -> str:
    return with_database(db_server[0], db_name)


@pytest.fixture
def spawn(service_uri, tmp_path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def spawn(name: str = "svc", **env: str) -> ServiceProcess:
        proc = ServiceProcess(service_uri, tmp_path, name, **env).start()
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(http) -> Api:
    return Api(http)
