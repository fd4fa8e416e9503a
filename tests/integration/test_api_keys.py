"""API keys: created by an admin (the secret shown once, only its hash stored),
used as bearer tokens, revoked (401 at once, on every replica), expired; and the
first admin key made from the command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time

from service.auth.keys import key_hash

from ..support.authkit import ORG_A, PEPPER, As, auth_settings
from ..support.devdb import ROOT
from ..support.helpers import make_csv, start_import


async def create_key(admin: As, expect: int = 201, **spec) -> dict:
    resp = await admin.post("/api/v1/api-keys", json=spec)
    body = await resp.json(content_type=None)
    assert resp.status == expect, body
    return body


async def me(client, secret: str):
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    return resp.status, await resp.json(content_type=None)


async def test_a_key_is_shown_once_stored_as_a_hash_and_acts_with_its_role(auth_client, idp_key, db):
    admin = As(auth_client, idp_key.mint("root", roles=["admin"]))
    created = await create_key(admin, name="nightly pipeline", role="operator")
    secret = created["secret"]
    assert secret.startswith("cjk_") and len(secret) == 44
    assert created["org_id"] == ORG_A and created["role"] == "operator"

    stored = await db.api_keys.find_one({"_id": created["id"]})
    assert stored["hash"] == key_hash(PEPPER, secret)
    assert secret not in repr(stored)  # neither the secret nor any part of it beyond the shown prefix
    assert secret[len(stored["prefix"]) :] not in repr(stored)

    listed = (await (await admin.get("/api/v1/api-keys")).json())["api_keys"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "secret" not in listed[0] and "hash" not in listed[0]
    assert listed[0]["created_by"]["actor"] == "root"

    status, body = await me(auth_client, secret)
    assert status == 200
    assert body == {
        "org_id": ORG_A,
        "actor": f"key:{created['id']}",
        "actor_name": "nightly pipeline",
        "role": "operator",
        "method": "api_key",
        "support": False,
    }
    pipeline = As(auth_client, secret)
    job = await start_import(pipeline, make_csv(5))
    assert job["org_id"] == ORG_A
    job_seen = await (await admin.get(f"/api/v1/jobs/{job['id']}")).json()
    assert job_seen["created_by"]["actor"] == f"key:{created['id']}"
    assert (await pipeline.get("/api/v1/api-keys")).status == 403  # an operator key


async def test_a_revoked_key_is_refused_at_once_on_every_replica(make_client, jwks, idp_key):
    first = await make_client(**auth_settings(jwks.url))
    second = await make_client(**auth_settings(jwks.url))  # another replica on the same database
    admin = As(first, idp_key.mint("root", roles=["admin"]))
    secret = (await create_key(admin, name="ci", role="viewer"))["secret"]
    key_id = (await me(second, secret))[1]["actor"].split(":", 1)[1]
    assert (await me(first, secret))[0] == 200 and (await me(second, secret))[0] == 200

    resp = await admin.delete(f"/api/v1/api-keys/{key_id}")
    revoked_at = time.monotonic()
    assert resp.status == 200 and (await resp.json())["revoked_at"] is not None
    for replica in (second, first):
        status, body = await me(replica, secret)
        assert status == 401, body
    assert time.monotonic() - revoked_at < 1.0
    # A second revocation answers the same and records nothing new.
    assert (await admin.delete(f"/api/v1/api-keys/{key_id}")).status == 200
    events = (await (await admin.get("/api/v1/audit", params={"action": "api_key.revoke"})).json())["events"]
    assert [(e["key_id"], e["actor"]) for e in events] == [(key_id, "root")]


async def test_an_expired_key_is_refused(auth_client, idp_key):
    admin = As(auth_client, idp_key.mint("root", roles=["admin"]))
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    created = await create_key(admin, name="short-lived", role="viewer", expires_at=soon.isoformat())
    assert (await me(auth_client, created["secret"]))[0] == 200
    deadline = time.monotonic() + 30
    while (await me(auth_client, created["secret"]))[0] == 200:
        assert time.monotonic() < deadline, "the key never expired"
        await asyncio.sleep(0.2)
    assert (await me(auth_client, created["secret"]))[0] == 401


async def test_bad_key_requests_are_400_and_unknown_keys_401(auth_client, idp_key):
    admin = As(auth_client, idp_key.mint("root", roles=["admin"]))
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).isoformat()
    for spec in (
        {"role": "viewer"},
        {"name": "x", "role": "owner"},
        {"name": "x", "role": "viewer", "expires_at": past},
        {"name": "x", "role": "viewer", "expires_at": "soon"},
        {"name": "x", "role": "viewer", "colour": "red"},
        {"name": "", "role": "viewer"},
    ):
        await create_key(admin, expect=400, **spec)
    assert (await me(auth_client, "cjk_" + "A" * 40))[0] == 401
    assert (await admin.delete("/api/v1/api-keys/nope")).status == 404


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", "api-keys", *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("AUTH_")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_first_admin_key_comes_from_the_command_line(auth_client, mongo, db):
    loop = asyncio.get_running_loop()
    done = await loop.run_in_executor(
        None,
        lambda: run_cli(
            "create",
            "--org",
            "acme",
            "--role",
            "admin",
            "--name",
            "first admin",
            MONGODB_URI=mongo.uri,
            AUTH_API_KEY_PEPPER=PEPPER,
        ),
    )
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert secret.startswith("cjk_") and "shown only now" in done.stderr
    status, body = await me(auth_client, secret)
    assert (status, body["org_id"], body["role"]) == (200, "acme", "admin")
    admin = As(auth_client, secret)
    events = (await (await admin.get("/api/v1/audit")).json())["events"]
    assert [(e["action"], e["actor"], e["method"]) for e in events] == [("api_key.create", "cli", "cli")]

    refused = await loop.run_in_executor(
        None, lambda: run_cli("create", "--org", "acme", "--role", "admin", "--name", "x", MONGODB_URI=mongo.uri)
    )
    assert refused.returncode == 2 and "AUTH_API_KEY_PEPPER" in refused.stderr
    assert await db.api_keys.count_documents({}) == 1


async def test_with_auth_disabled_everyone_is_the_default_orgs_admin_and_keys_are_off(client):
    status, body = await me(client, "anything")
    assert status == 200
    assert (body["org_id"], body["role"], body["method"]) == ("default", "admin", "disabled")
    resp = await client.post("/api/v1/api-keys", json={"name": "x", "role": "viewer"})
    assert resp.status == 503 and "AUTH_DISABLED" in (await resp.json())["detail"]
