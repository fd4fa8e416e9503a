"""What the auth tests need of an identity provider: keys they generate, JWTs
minted with them, and a JWKS served by a local aiohttp server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.example.test/"
AUDIENCE = "collect-jobs"
PEPPER = "test-pepper-0123456789abcdef0123456789abcdef"
ORG_A, ORG_B = "org-a", "org-b"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @classmethod
    def rsa(cls, kid: str, alg: str = "RS256") -> SigningKey:
        return cls(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.algorithms.RSAAlgorithm if self.alg.startswith("RS") else jwt.algorithms.ECAlgorithm
        return {**algorithm.to_jwk(self.private.public_key(), as_dict=True), "kid": self.kid, "use": "sig", "alg": self.alg}

    def mint(
        self, sub: str = "alice", *, org: str | None = ORG_A, roles: Any = ("operator",), kid: str | None = None, **claims: Any
    ) -> str:
        """A token as the identity provider would issue it; ``claims`` override or add."""
        now = int(time.time())
        payload: dict[str, Any] = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
        if org is not None:
            payload["org_id"] = org
        if roles is not None:
            payload["roles"] = list(roles) if not isinstance(roles, str) else roles
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers={"kid": kid or self.kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(payload: dict[str, Any], kid: str) -> str:
    """alg "none": a token anyone can write."""
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(payload).encode())}."


def hs256_with_public_key(payload: dict[str, Any], kid: str, public_pem: str) -> str:
    """The classic confusion attack: HS256 "signed" with the (public) RSA key as the secret."""
    head = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(public_pem.encode(), head.encode(), hashlib.sha256).digest()
    return f"{head}.{b64(signature)}"


@dataclass
class Jwks:
    """The identity provider's JWKS endpoint: keys can be rotated, hits counted,
    and the server stopped."""

    keys: list[SigningKey]
    hits: int = 0
    server: TestServer | None = field(default=None, repr=False)

    def app(self) -> web.Application:
        async def jwks(request: web.Request) -> web.Response:
            self.hits += 1
            return web.json_response({"keys": [k.jwk() for k in self.keys]})

        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", jwks)
        return app

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/.well-known/jwks.json"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth_settings(jwks_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings overrides that turn authentication on, as production runs it."""
    return {
        "auth_disabled": False,
        "auth_jwks_url": jwks_url,
        "auth_jwt_issuer": ISSUER,
        "auth_jwt_audience": AUDIENCE,
        "auth_api_key_pepper": PEPPER,
        # The local JWKS server of the tests is plain http on 127.0.0.1.
        "auth_jwks_allow_http_loopback": True,
        **overrides,
    }


class As:
    """A test client that sends one caller's token (and X-Org-Id) with every
    request, so the helpers in tests/support/helpers.py work unchanged."""

    def __init__(self, client: Any, token: str, org: str | None = None) -> None:
        self.client = client
        self.headers = {**bearer(token), **({"X-Org-Id": org} if org else {})}
        self.app = client.app

    def _with_auth(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "headers": {**self.headers, **(kwargs.get("headers") or {})}}

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, **self._with_auth(kwargs))

    def post(self, path: str, **kwargs: Any):
        return self.client.post(path, **self._with_auth(kwargs))

    def delete(self, path: str, **kwargs: Any):
        return self.client.delete(path, **self._with_auth(kwargs))

    def request(self, method: str, path: str, **kwargs: Any):
        return self.client.request(method, path, **self._with_auth(kwargs))
