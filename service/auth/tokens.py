"""JWTs of the platform's identity provider, verified with PyJWT against a static
PEM key or the provider's JWKS. The JWKS is fetched with aiohttp (PyJWKClient's
urllib would block the event loop), cached, and fetched again when a token names
a key id it does not hold, at most once per JWKS_MIN_REFRESH_SECONDS: a
flood of made-up key ids cannot turn into a flood of requests to the provider."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

log = logging.getLogger(__name__)

# Asymmetric only: never "none", never an HMAC whose "secret" is the public key.
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384")
FAMILY = {"RSA": ("RS256", "RS384", "RS512"), "EC": ("ES256", "ES384")}
LEEWAY_SECONDS = 30  # clock skew tolerated on exp, nbf and iat
JWKS_MAX_AGE_SECONDS = 3600  # keys are re-read this often even without an unknown kid
# Least time between two reads of the JWKS, whatever asks (an unknown kid, keys
# due for a re-read). Fixed, not a setting: it only stops made-up key ids from
# becoming a flood of requests to the provider, and a minute suits every
# provider (a key rotated in is accepted within a minute of its first token).
JWKS_MIN_REFRESH_SECONDS = 60.0
FETCH_TIMEOUT_SECONDS = 5


class TokenError(Exception):
    """The token is not acceptable; the message is logged, never sent to the caller."""


class KeysUnavailable(Exception):
    """The JWKS has not been read for longer than its maximum stale age (or never):
    no token can be checked until the provider answers."""


class JwksCache:
    """The provider's signing keys by key id, refreshed on demand."""

    def __init__(self, url: str, session: aiohttp.ClientSession, max_stale_seconds: float) -> None:
        self.url = url
        self.session = session
        self.min_refresh_seconds = JWKS_MIN_REFRESH_SECONDS
        self.max_stale_seconds = max_stale_seconds
        # Re-read well before the keys go stale, so one failed read is not fatal.
        self.max_age_seconds = min(JWKS_MAX_AGE_SECONDS, max_stale_seconds / 2)
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last good read
        self._tried_at: float | None = None  # and of the last attempt
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        due = self._fetched_at is None or time.monotonic() - self._fetched_at > self.max_age_seconds
        if due or self._find(kid) is None:
            await self._refresh()
        if self._fetched_at is None:
            raise KeysUnavailable(f"the JWKS at {self.url} has not been read yet")
        age = time.monotonic() - self._fetched_at
        if age > self.max_stale_seconds:
            raise KeysUnavailable(f"the JWKS at {self.url} was last read {age:.0f} s ago (AUTH_JWKS_MAX_STALE_SECONDS)")
        found = self._find(kid)
        if found is None:
            raise TokenError(f"no key {kid!r} in the JWKS")
        kid, jwk = found
        cached = self._keys.get((kid, alg))
        if cached is None:
            if jwk.get("alg") not in (None, alg) or alg not in FAMILY.get(jwk.get("kty", ""), ()):
                raise TokenError(f"key {kid!r} is not a key for {alg}")
            try:
                cached = self._keys[(kid, alg)] = jwt.PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError as exc:
                raise TokenError(f"key {kid!r} cannot be used: {exc}") from None
        return cached

    def _find(self, kid: str | None) -> tuple[str, dict[str, Any]] | None:
        if kid is None:
            # A token without kid is accepted only when the set has one key.
            return next(iter(self._jwks.items())) if len(self._jwks) == 1 else None
        jwk = self._jwks.get(kid)
        return None if jwk is None else (kid, jwk)

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._tried_at is not None and now - self._tried_at < self.min_refresh_seconds:
                return  # read just now (perhaps by a request waiting on the same lock)
            self._tried_at = now
            try:
                timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
                async with self.session.get(self.url, timeout=timeout) as response:
                    response.raise_for_status()
                    body = await response.json(content_type=None)
                keys = body["keys"]
                if not isinstance(keys, list):
                    raise ValueError("keys is not a list")
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
                # The keys already held stay in use: a provider outage must not log everyone out.
                log.warning(
                    "could not read the JWKS at %s (%s: %s); keeping %d cached keys",
                    self.url,
                    type(exc).__name__,
                    exc,
                    len(self._jwks),
                )
                return
            jwks = {}
            for jwk in keys:
                if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str) and jwk.get("use") in (None, "sig"):
                    if jwk.get("kty") in FAMILY:
                        jwks[jwk["kid"]] = jwk
            self._jwks, self._keys, self._fetched_at = jwks, {}, now
            log.info("read %d signing keys from the JWKS at %s", len(jwks), self.url)


class StaticKey:
    """One PEM public key (AUTH_JWT_PUBLIC_KEY) for every token."""

    def __init__(self, pem: str) -> None:
        self.public_key = load_pem_public_key(pem.encode())
        kty = "RSA" if isinstance(self.public_key, rsa.RSAPublicKey) else "EC"
        assert kty == "RSA" or isinstance(self.public_key, ec.EllipticCurvePublicKey)
        self.algorithms = FAMILY[kty]

    async def key(self, kid: str | None, alg: str) -> Any:
        if alg not in self.algorithms:
            raise TokenError(f"{alg} does not match the configured key")
        return self.public_key


class JwtVerifier:
    """Checks a token's signature, algorithm, exp, nbf and (when set) iss and aud."""

    def __init__(self, keys: JwksCache | StaticKey, issuer: str, audience: str) -> None:
        self.keys = keys
        self.issuer = issuer or None
        self.audience = audience or None

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise TokenError(f"algorithm {alg!r} is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("kid is not a string")
        key = await self.keys.key(kid, alg)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"{type(exc).__name__}: {exc}") from None
