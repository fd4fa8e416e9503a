"""Authentication in real `python -m service` processes: secure by default, and
an API key made on the command line and revoked on one replica is refused by
the other at once."""

from __future__ import annotations

import os
import subprocess
import sys

from ..support.authkit import PEPPER
from ..support.devdb import ROOT
from .api import FAST


def test_the_service_refuses_to_start_without_auth_settings(service_uri):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={**env, "MONGODB_URI": service_uri, "PORT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AUTH_API_KEY_PEPPER" in done.stderr and "AUTH_DISABLED=true" in done.stderr


async def test_auth_disabled_warns_at_start_and_acts_as_admin_of_the_default_org(spawn, http):
    proc = spawn("open", AUTH_DISABLED="true", DEFAULT_ORG_ID="dev")
    async with http.get(f"{proc.url}/api/v1/me") as resp:
        assert resp.status == 200
        assert (await resp.json())["org_id"] == "dev"
        assert (await resp.json())["role"] == "admin"
    assert "AUTH_DISABLED=true: authentication is off" in proc.log()


async def test_a_cli_key_revoked_on_one_replica_is_refused_by_the_other(spawn, http, service_uri):
    env = {**FAST, "AUTH_API_KEY_PEPPER": PEPPER}
    one, two = spawn("one", **env), spawn("two", **env)
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    made = subprocess.run(
        [sys.executable, "-m", "service", "api-keys", "create", "--org", "acme", "--role", "admin", "--name", "ops"],
        cwd=ROOT,
        env={**base, "MONGODB_URI": service_uri, "AUTH_API_KEY_PEPPER": PEPPER},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    admin = {"Authorization": f"Bearer {made.stdout.strip()}"}
    async with http.post(f"{one.url}/api/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
        ci = await resp.json()
    ci_auth = {"Authorization": f"Bearer {ci['secret']}"}
    async with http.get(f"{two.url}/api/v1/jobs", headers=ci_auth) as resp:
        assert resp.status == 200
    async with http.delete(f"{two.url}/api/v1/api-keys/{ci['id']}", headers=admin) as resp:
        assert resp.status == 200
    for proc in (one, two):
        async with http.get(f"{proc.url}/api/v1/jobs", headers=ci_auth) as resp:
            assert resp.status == 401
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    async with http.get(f"{one.url}/healthz") as resp:
        assert resp.status == 200
