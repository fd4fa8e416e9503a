"""The identity middleware: every /api request is resolved to an Identity before
its handler runs. It is the one place that reads credentials; paths outside
/api (probes, metrics, the console's static files) carry no organisation's data
and need none, and an /api handler opts out only with @public(reason)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import BadRequest, Forbidden, Unauthorized, Unavailable
from ..settings import Settings
from ..typedefs import AUTH_KEY, DB_KEY, SETTINGS_KEY
from .identity import IDENTITY_KEY, SUPPORT_ROLE, Handler, Identity, Role, public_reason
from .keys import ApiKeys, looks_like_key
from .tokens import JwksCache, JwtVerifier, KeysUnavailable, StaticKey, TokenError

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
ORG_HEADER = "X-Org-Id"
ORG_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TOKEN_LENGTH = 16 * 1024


class Authenticator:
    """Turns a request's credentials into an Identity, or raises 401/403."""

    def __init__(self, settings: Settings, keys: ApiKeys, jwt: JwtVerifier | None) -> None:
        self.settings = settings
        self.keys = keys
        self.jwt = jwt

    async def identify(self, request: web.Request) -> Identity:
        settings = self.settings
        if settings.auth_disabled:
            anonymous = Identity(settings.default_org_id, "anonymous", "anonymous (AUTH_DISABLED)", Role.ADMIN, "disabled")
            return self._in_org(anonymous, [], request)
        token = self._bearer(request)
        if looks_like_key(token):
            identity = await self.keys.identify(token, dt.datetime.now(dt.timezone.utc))
            if identity is None:
                raise self._refuse(request, "unknown, revoked or expired API key")
            return self._in_org(identity, [], request)
        if self.jwt is None:
            raise self._refuse(request, "a JWT, but no AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY is set")
        try:
            claims = await self.jwt.claims(token)
        except TokenError as exc:
            raise self._refuse(request, str(exc)) from None
        except KeysUnavailable as exc:
            log.warning("503 %s %s: %s", request.method, request.path, exc)
            unavailable = Unavailable(
                "The identity provider's signing keys cannot be read right now, so tokens cannot be checked; "
                "retry shortly (API keys still work)."
            )
            unavailable.headers["Retry-After"] = "30"
            raise unavailable from None
        return self._in_org(self._from_claims(claims), _roles(claims.get(settings.auth_roles_claim)), request)

    def _bearer(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
            raise self._refuse(request, "no bearer token" if not header else "malformed Authorization header")
        return token

    def _from_claims(self, claims: dict[str, Any]) -> Identity:
        org = claims.get(self.settings.auth_org_claim)
        roles = _roles(claims.get(self.settings.auth_roles_claim))
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise Unauthorized()
        name = next((claims[c] for c in ("name", "preferred_username", "email") if isinstance(claims.get(c), str)), sub)
        if org is not None and not (isinstance(org, str) and ORG_RE.fullmatch(org)):
            raise Forbidden(f"The token's {self.settings.auth_org_claim!r} claim is not an organisation id.")
        return Identity(org_id=org or "", actor=sub, actor_name=name, role=Role.highest(roles), method="jwt")

    def _in_org(self, identity: Identity, roles: list[str], request: web.Request) -> Identity:
        """Applies X-Org-Id: the support role acts in the organisation it names;
        anyone else may only name their own."""
        named = request.headers.get(ORG_HEADER)
        if named is not None and not ORG_RE.fullmatch(named):
            raise BadRequest(f"{ORG_HEADER} must be 1-64 letters, digits, '_' or '-'.", parameter=ORG_HEADER)
        support = self.settings.auth_support_role
        if named is not None and named != identity.org_id:
            if support not in roles:
                raise Forbidden(f"Acting in another organisation ({ORG_HEADER}) needs the support role.", required_role=support)
            return Identity(
                org_id=named,
                actor=identity.actor,
                actor_name=identity.actor_name,
                role=SUPPORT_ROLE,
                method=identity.method,
                support=True,
                home_org=identity.org_id or None,
            )
        if not identity.org_id:
            claim = self.settings.auth_org_claim
            raise Forbidden(
                f"The token names no organisation (claim {claim!r})"
                + (f"; as support, name one in {ORG_HEADER}." if support in roles else ".")
            )
        return identity

    def _refuse(self, request: web.Request, why: str) -> Unauthorized:
        # Why is logged for the operator and never sent: the caller only learns "invalid token".
        log.info("401 %s %s from %s: %s", request.method, request.path, request.remote, why)
        return Unauthorized()


def _roles(value: Any) -> list[str]:
    """A roles claim: a list of names or one space-separated string."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


@web.middleware
async def identity_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(API_PREFIX) and public_reason(request.match_info.handler) is None:
        identity = await request.app[AUTH_KEY].identify(request)
        request[IDENTITY_KEY] = identity
        if identity.role is None:
            raise Forbidden("This service needs at least the viewer role.", required_role=Role.VIEWER.value)
    return await handler(request)


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the authenticator, with its HTTP session for the JWKS.
    Registered after the database's: API keys live there."""
    settings = app[SETTINGS_KEY]
    settings.check_auth()
    if settings.auth_disabled:
        log.warning(
            "AUTH_DISABLED=true: authentication is off and every request acts as an admin of %r. "
            "Never run like this where anyone else can reach the service.",
            settings.default_org_id,
        )
    async with aiohttp.ClientSession() as session:
        verifier = None
        if settings.auth_jwks_url:
            cache = JwksCache(settings.auth_jwks_url, session, settings.auth_jwks_max_stale_seconds)
            verifier = JwtVerifier(cache, settings.auth_jwt_issuer, settings.auth_jwt_audience)
        elif settings.auth_jwt_public_key:
            verifier = JwtVerifier(StaticKey(settings.auth_jwt_public_key), settings.auth_jwt_issuer, settings.auth_jwt_audience)
        app[AUTH_KEY] = Authenticator(settings, ApiKeys(app[DB_KEY].api_keys, settings.auth_api_key_pepper), verifier)
        yield
