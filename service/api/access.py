"""Who am I, and the org's API keys: GET /me, POST/GET /api-keys, DELETE /api-keys/{id}."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from .. import audit
from ..auth.identity import Role, caller, requires
from ..auth.keys import ApiKeys, key_json
from ..csvio.schema import parse_datetime
from ..errors import BadRequest, Unavailable
from ..jobs.model import iso
from ..typedefs import DB_KEY, SETTINGS_KEY
from .common import json_object, json_response, org_of, query_params

KEY_FIELDS = frozenset({"name", "role", "expires_at"})
MAX_NAME = 100


def _keys(request: web.Request) -> ApiKeys:
    pepper = request.app[SETTINGS_KEY].auth_api_key_pepper
    if not pepper:  # only possible with AUTH_DISABLED=true
        raise Unavailable("API keys are off: this service runs with AUTH_DISABLED=true and no AUTH_API_KEY_PEPPER.")
    return ApiKeys(request.app[DB_KEY].api_keys, pepper)


def _render(doc: dict[str, Any]) -> dict[str, Any]:
    body = key_json(doc)
    for field in ("created_at", "expires_at", "revoked_at"):
        body[field] = iso(body[field])
    return body


async def me(request: web.Request) -> web.Response:
    """The caller as the service sees them (any role): the console shows only
    the buttons the role allows, and a 401 here means the token expired."""
    query_params(request, ())
    return json_response(caller(request).as_json())


def key_spec(body: dict[str, Any]) -> tuple[str, Role, dt.datetime | None]:
    unknown = sorted(set(body) - KEY_FIELDS)
    if unknown:
        raise BadRequest(f"Unknown fields: {', '.join(unknown)}; use {', '.join(sorted(KEY_FIELDS))}.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise BadRequest(f"name is required: 1-{MAX_NAME} characters naming the key's user.", parameter="name")
    role = body.get("role")
    if not isinstance(role, str) or role not in Role._value2member_map_:
        raise BadRequest(f"role must be one of {', '.join(r.value for r in Role)}.", parameter="role")
    expires_at = body.get("expires_at")
    if expires_at is not None:
        try:
            if not isinstance(expires_at, str):
                raise ValueError("not a string")
            expires_at = parse_datetime(expires_at)
        except ValueError:
            raise BadRequest("expires_at must be an ISO 8601 date or datetime.", parameter="expires_at") from None
        if expires_at <= dt.datetime.now(dt.timezone.utc):
            raise BadRequest("expires_at is in the past.", parameter="expires_at")
    return name.strip(), Role(role), expires_at


@requires(Role.ADMIN)
async def create_key(request: web.Request) -> web.Response:
    """201 with the key and its secret, which is shown this once and never stored."""
    query_params(request, ())
    name, role, expires_at = key_spec(await json_object(request))
    doc, secret = await _keys(request).create(org_of(request), name, role, expires_at, caller(request).who())
    await audit.record(request, "api_key.create", key_id=doc["_id"])
    body = {**_render(doc), "secret": secret}
    return json_response(body, status=201, headers={"Location": body["links"]["self"]})


@requires(Role.ADMIN)
async def list_keys(request: web.Request) -> web.Response:
    query_params(request, ())
    return json_response({"api_keys": [_render(d) for d in await _keys(request).list(org_of(request))]})


@requires(Role.ADMIN)
async def revoke_key(request: web.Request) -> web.Response:
    """Revokes the key at once on every replica (each request looks its key up);
    a second revocation answers the same and records nothing."""
    query_params(request, ())
    doc, revoked = await _keys(request).revoke(org_of(request), request.match_info["key_id"], caller(request).who())
    if revoked:
        await audit.record(request, "api_key.revoke", key_id=doc["_id"])
    return json_response(_render(doc))
