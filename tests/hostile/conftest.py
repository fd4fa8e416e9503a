"""The hostile suite: the real app with authentication on, a real database,
two organisations, and an attacker who holds only a viewer API key of org A
(unless a case needs more, and then it says so)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from ..authkit import ORG_B, As
from ..helpers import make_csv, start_import, wait_for_state


@dataclass
class Orgs:
    admin_a: As  # a JWT admin of org A (made the viewer key)
    operator_a: As
    operator_b: As
    viewer: As  # the attacker: a viewer API key of org A


@pytest.fixture
async def orgs(auth_client, idp_key) -> Orgs:
    admin_a = As(auth_client, idp_key.mint("root-a", roles=["admin"]))
    resp = await admin_a.post("/api/v1/api-keys", json={"name": "attacker", "role": "viewer"})
    assert resp.status == 201, await resp.text()
    viewer = As(auth_client, (await resp.json())["secret"])
    return Orgs(
        admin_a=admin_a,
        operator_a=As(auth_client, idp_key.mint("olga", roles=["operator"])),
        operator_b=As(auth_client, idp_key.mint("bert", org=ORG_B, roles=["operator"])),
        viewer=viewer,
    )


async def imported(client: As, body: bytes | None = None, dataset: str = "people") -> dict:
    """A completed import of ``body`` (20 rows of people by default)."""
    job = await start_import(client, body or make_csv(20), dataset=dataset)
    return await wait_for_state(client, job["id"], "completed")


async def exported(client: As, dataset: str = "people") -> dict:
    """A completed background export of ``dataset``."""
    resp = await client.post("/api/v1/jobs/export", json={"dataset": dataset})
    assert resp.status == 202, await resp.text()
    return await wait_for_state(client, (await resp.json())["id"], "completed")
