"""Finding 5: tokens meant for another application are refused. In JWT mode the
service will not start without an issuer and an audience; the JWKS is read over
https only (http on loopback only with an explicit development flag); the
cross-org role is a configurable, namespaced claim value; and cached signing
keys stop being trusted once the JWKS has been unreachable for too long."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.auth import tokens
from service.settings import ConfigError, Settings

from ..support.authkit import ORG_B, PEPPER, As, auth_settings, bearer

HTTPS_JWKS = "https://idp.example.com/.well-known/jwks.json"
JWT_MODE = {"AUTH_JWKS_URL": HTTPS_JWKS, "AUTH_API_KEY_PEPPER": PEPPER}


async def test_a_token_for_another_audience_is_401(auth_client, idp_key):
    resp = await auth_client.get("/api/v1/me", headers=bearer(idp_key.mint(aud="other-app")))
    assert resp.status == 401
    resp = await auth_client.get("/api/v1/me", headers=bearer(idp_key.mint()))
    assert resp.status == 200


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "AUTH_JWT_ISSUER"),
        ({"AUTH_JWT_ISSUER": "https://idp.example.com/"}, "AUTH_JWT_AUDIENCE"),
        ({"AUTH_JWT_AUDIENCE": "collect-jobs"}, "AUTH_JWT_ISSUER"),
    ],
)
def test_jwt_mode_refuses_to_start_without_an_issuer_and_an_audience(given, missing):
    settings = Settings.from_env({**JWT_MODE, **given})
    with pytest.raises(ConfigError, match=missing):
        settings.check_auth()


def test_api_keys_alone_need_no_issuer_or_audience():
    Settings.from_env({"AUTH_API_KEY_PEPPER": PEPPER}).check_auth()


@pytest.mark.parametrize(
    ("url", "flag", "ok"),
    [
        ("http://idp.example.com/jwks.json", None, False),
        ("http://idp.example.com/jwks.json", "true", False),  # the flag is for loopback only
        ("http://127.0.0.1:8081/jwks.json", None, False),
        ("http://127.0.0.1:8081/jwks.json", "true", True),
        ("http://[::1]:8081/jwks.json", "true", True),
        ("http://localhost:8081/jwks.json", "true", True),
        ("https://idp.example.com/jwks.json", None, True),
    ],
)
def test_the_jwks_must_be_https_unless_a_development_flag_allows_loopback_http(url, flag, ok):
    env = {**JWT_MODE, "AUTH_JWKS_URL": url, "AUTH_JWT_ISSUER": "i", "AUTH_JWT_AUDIENCE": "a"}
    if flag:
        env["AUTH_JWKS_ALLOW_HTTP_LOOPBACK"] = flag
    settings = Settings.from_env(env)
    if ok:
        settings.check_auth()
    else:
        with pytest.raises(ConfigError, match="AUTH_JWKS_URL must be https"):
            settings.check_auth()


async def test_the_bare_support_claim_of_a_shared_provider_acts_in_no_other_org(auth_client, idp_key):
    """Any client of a shared identity provider may carry a role named
    "support"; only the configured, namespaced name crosses organisations."""
    bare = As(auth_client, idp_key.mint("eve", org="platform", roles=["support"]), org=ORG_B)
    resp = await bare.get("/api/v1/jobs")
    assert resp.status == 403, await resp.text()
    namespaced = As(auth_client, idp_key.mint("sam", org="platform", roles=["collect-jobs:support"]), org=ORG_B)
    resp = await namespaced.get("/api/v1/me")
    assert resp.status == 200 and (await resp.json())["org_id"] == ORG_B


async def test_the_support_role_name_is_configurable(make_client, jwks, idp_key):
    client = await make_client(**auth_settings(jwks.url, auth_support_role="acme-support"))
    ok = As(client, idp_key.mint("sam", org="platform", roles=["acme-support"]), org=ORG_B)
    assert (await ok.get("/api/v1/jobs")).status == 200
    default = As(client, idp_key.mint("sam", org="platform", roles=["collect-jobs:support"]), org=ORG_B)
    assert (await default.get("/api/v1/jobs")).status == 403


async def test_cached_keys_past_their_maximum_stale_age_are_refused_with_503_while_the_jwks_is_down(
    make_client, jwks, idp_key, orgs_free_key, monkeypatch
):
    monkeypatch.setattr(tokens, "JWKS_MIN_REFRESH_SECONDS", 0.0)  # every request tries the provider that is gone
    client = await make_client(**auth_settings(jwks.url, auth_jwks_max_stale_seconds=1.0))
    token = idp_key.mint()
    assert (await client.get("/api/v1/me", headers=bearer(token))).status == 200
    await jwks.server.close()  # the identity provider goes away
    deadline = time.monotonic() + 15
    while True:
        resp = await client.get("/api/v1/me", headers=bearer(token))
        if resp.status != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    problem = await resp.json(content_type=None)
    assert resp.status == 503, problem
    assert resp.content_type == "application/problem+json" and "Retry-After" in resp.headers
    assert "identity provider" in problem["detail"]
    # API keys do not depend on the JWKS: they still work.
    secret = await orgs_free_key(client)
    assert (await client.get("/api/v1/me", headers=bearer(secret))).status == 200


@pytest.fixture
def orgs_free_key(db):
    """An admin API key of org A, made the way the CLI makes the first one."""

    async def make(client) -> str:
        from service.auth.identity import Role
        from service.auth.keys import ApiKeys

        keys = ApiKeys(db.api_keys, PEPPER)
        _, secret = await keys.create("org-a", "ops", Role.ADMIN, None, {"actor": "cli", "actor_name": "cli", "method": "cli"})
        return secret

    return make
