"""JWTs from the identity provider, against the real app and a local JWKS server:
every token that must be refused is a 401 that says nothing about why."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.auth import tokens

from ..support.authkit import AUDIENCE, ISSUER, ORG_A, SigningKey, auth_settings, bearer, hs256_with_public_key, unsigned_token


async def me(client, token: str):
    resp = await client.get("/api/v1/me", headers=bearer(token))
    return resp.status, await resp.json(content_type=None), resp.headers


async def test_a_valid_token_resolves_to_the_org_actor_and_role_it_names(auth_client, idp_key):
    status, body, _ = await me(auth_client, idp_key.mint("alice", roles=["viewer", "operator"], name="Alice A."))
    assert status == 200, body
    assert body == {
        "org_id": ORG_A,
        "actor": "alice",
        "actor_name": "Alice A.",
        "role": "operator",
        "method": "jwt",
        "support": False,
    }


async def test_roles_may_be_a_space_separated_string(auth_client, idp_key):
    status, body, _ = await me(auth_client, idp_key.mint(roles="viewer admin"))
    assert (status, body["role"]) == (200, "admin")


async def test_an_es256_key_of_the_jwks_is_accepted(make_client, jwks, idp_key):
    ec_key = SigningKey.ec("ec-1")
    jwks.keys.append(ec_key)
    client = await make_client(**auth_settings(jwks.url))
    status, body, _ = await me(client, ec_key.mint("bob"))
    assert (status, body["actor"]) == (200, "bob")


def _refused_tokens(key: SigningKey) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "org_id": ORG_A, "roles": ["admin"], "exp": now + 300}
    stranger = SigningKey.rsa(key.kid)  # the same kid, another private key
    return {
        "expired": key.mint(exp=now - 3600, iat=now - 7200),
        "not yet valid": key.mint(nbf=now + 3600),
        "wrong issuer": key.mint(iss="https://evil.example.test/"),
        "wrong audience": key.mint(aud="another-service"),
        "no expiry": key.mint(exp=None),
        "bad signature": stranger.mint(),
        "alg none": unsigned_token(claims, key.kid),
        "HS256 signed with the public key": hs256_with_public_key(claims, key.kid, key.public_pem()),
        "tampered payload": key.mint()[:-10] + "AAAAAAAAAA",
        "not a JWT": "hello",
    }


async def test_every_bad_token_is_the_same_401_with_www_authenticate(auth_client, idp_key):
    answers = {}
    for case, token in _refused_tokens(idp_key).items():
        status, body, headers = await me(auth_client, token)
        assert status == 401, (case, body)
        assert 'error="invalid_token"' in headers["WWW-Authenticate"], case
        assert headers["Content-Type"].startswith("application/problem+json"), case
        answers[case] = (body["title"], body["detail"])
    # Nothing in the answer tells which check failed.
    assert len(set(answers.values())) == 1, answers


@pytest.mark.parametrize("header", ["", "Bearer", "Basic YWxpY2U6cHc=", "Bearer  "])
async def test_a_missing_or_malformed_authorization_header_is_401(auth_client, header):
    resp = await auth_client.get("/api/v1/jobs", headers={"Authorization": header} if header else {})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_a_key_rotated_in_is_accepted_after_one_refresh_without_a_restart(make_client, jwks, idp_key, monkeypatch):
    monkeypatch.setattr(tokens, "JWKS_MIN_REFRESH_SECONDS", 1.0)  # a second, not the minute, between reads
    client = await make_client(**auth_settings(jwks.url))
    assert (await me(client, idp_key.mint()))[0] == 200
    assert jwks.hits == 1
    rotated = SigningKey.rsa("key-2")
    jwks.keys = [idp_key, rotated]
    # The first read was less than a second ago: the refresh waits for the interval.
    deadline = time.monotonic() + 10
    while (status := (await me(client, rotated.mint()))[0]) != 200:
        assert status == 401
        assert time.monotonic() < deadline, "the rotated key was never accepted"
        await asyncio.sleep(0.1)
    assert jwks.hits == 2  # exactly one refresh


async def test_unknown_key_ids_refresh_the_jwks_at_most_once_per_interval(make_client, jwks, idp_key):
    assert tokens.JWKS_MIN_REFRESH_SECONDS == 60  # the production interval, longer than this test
    client = await make_client(**auth_settings(jwks.url))
    assert (await me(client, idp_key.mint()))[0] == 200
    for i in range(20):
        assert (await me(client, idp_key.mint(kid=f"made-up-{i}")))[0] == 401
    assert jwks.hits == 1


async def test_with_the_jwks_server_down_cached_keys_work_and_unknown_keys_are_401(make_client, jwks, idp_key, monkeypatch):
    monkeypatch.setattr(tokens, "JWKS_MIN_REFRESH_SECONDS", 0.0)  # the unknown kid does try the server that is down
    client = await make_client(**auth_settings(jwks.url))
    assert (await me(client, idp_key.mint()))[0] == 200
    await jwks.server.close()
    assert (await me(client, idp_key.mint("alice")))[0] == 200
    status, body, _ = await me(client, SigningKey.rsa("key-new").mint())
    assert status == 401, body
    assert (await me(client, idp_key.mint("alice")))[0] == 200


async def test_a_static_pem_key_verifies_tokens_without_a_jwks(make_client, idp_key):
    client = await make_client(**auth_settings("", auth_jwks_url="", auth_jwt_public_key=idp_key.public_pem()))
    assert (await me(client, idp_key.mint()))[0] == 200
    assert (await me(client, SigningKey.rsa(idp_key.kid).mint()))[0] == 401
    claims = {"sub": "m", "iss": ISSUER, "aud": AUDIENCE, "org_id": ORG_A, "exp": int(time.time()) + 60}
    assert (await me(client, hs256_with_public_key(claims, idp_key.kid, idp_key.public_pem())))[0] == 401


async def test_a_token_naming_no_organisation_is_403_saying_so(auth_client, idp_key):
    status, body, _ = await me(auth_client, idp_key.mint(org=None))
    assert status == 403 and "org_id" in body["detail"], body


async def test_a_token_with_no_known_role_is_403_naming_viewer(auth_client, idp_key):
    status, body, _ = await me(auth_client, idp_key.mint(roles=["billing"]))
    assert status == 403 and body["required_role"] == "viewer", body
