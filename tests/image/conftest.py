"""Fixtures of the image test: the image scripts/image-test built, the chart
rendered against the test database, and replicas of the image under podman.
What an operator supplies (chart values, Secrets, the org whose API key the
test uses) is here, in one place."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest
import yaml
from pymongo import AsyncMongoClient

from ..acceptance.api import Api
from ..support.devdb import with_database
from .pod import CHART, Container, PodSpec, image_under_test

MODES = ["plain", "restricted"]  # restricted: under the chart's security context
ORG = "image-test"
PEPPER = secrets.token_hex(32)


def chart(service_uri: str) -> PodSpec:
    """The chart as an operator installs it for the test: its database and,
    where the chart asks for one, the existing Secret with the API-key pepper."""
    values, existing = {"mongodb.uri": service_uri}, {}
    auth = yaml.safe_load((CHART / "values.yaml").read_text()).get("auth")
    if auth is not None and "existingSecret" in auth:
        values["auth.existingSecret"] = "collect-jobs-image-test-auth"
        existing["collect-jobs-image-test-auth"] = {auth["existingSecretPepperKey"]: PEPPER}
    return PodSpec.render(values, existing)


@pytest.fixture(scope="session")
def image() -> str:
    image = image_under_test()
    if not image:
        pytest.skip("run by scripts/image-test, which builds the image with podman")
    return image


def replica_name(label: str) -> str:
    return f"collect-jobs-image-test-{uuid.uuid4().hex[:8]}-{label}"


@pytest.fixture(scope="module", params=MODES)
def replica(request, image, db_server, tmp_path_factory) -> Iterator[Container]:
    """One replica per mode, shared by the checks that do not stop it."""
    spec = chart(with_database(db_server[0], f"image_{uuid.uuid4().hex[:12]}"))
    container = Container(image, spec, replica_name(request.param), restricted=request.param == "restricted")
    try:
        yield container.start()
    finally:
        container.remove(tmp_path_factory.mktemp("logs"))


@pytest.fixture
def service_uri(db_server, db_name) -> str:
    return with_database(db_server[0], db_name)


@pytest.fixture
def launch(image, service_uri, tmp_path) -> Iterator[Callable[..., Container]]:
    """Starts replicas of the image on this test's database; each is removed
    afterwards, its log kept in tmp_path."""
    spec = chart(service_uri)
    started: list[Container] = []

    def launch(label: str, *, restricted: bool) -> Container:
        container = Container(image, spec, replica_name(label), restricted=restricted)
        started.append(container)
        return container.start()

    yield launch
    for container in started:
        container.remove(tmp_path)


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[Container], Awaitable[Api]]]:
    """The API of a replica, with credentials for its database (any replica
    on the same database accepts them)."""
    sessions: list[aiohttp.ClientSession] = []

    async def connect(container: Container) -> Api:
        headers = await asyncio.to_thread(container.credentials, ORG)
        sessions.append(aiohttp.ClientSession(headers=headers))
        return Api(sessions[-1])

    yield connect
    for session in sessions:
        await session.close()


@pytest.fixture
async def records(service_uri):
    client = AsyncMongoClient(service_uri)
    yield client.get_default_database()["records"]
    await client.close()
