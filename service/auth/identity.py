"""Who is asking: the caller's Identity, roles, and the declarative role checks
handlers carry. The identity middleware (service/auth/middleware.py) is the only
code that reads credentials; handlers ask ``caller(request)``."""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from ..errors import Forbidden

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)


class Role(str, enum.Enum):
    """Ordered: each role may do everything the roles before it may."""

    VIEWER = "viewer"  # read jobs, events, completed results (and download tickets for them)
    # Also start work of any kind (imports, teams, background and streamed
    # exports, download tickets for a new export) and pause/resume/terminate/retry it.
    OPERATOR = "operator"
    ADMIN = "admin"  # also manage API keys and read the audit log

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank

    @classmethod
    def highest(cls, names: list[str]) -> Role | None:
        known = [cls(n) for n in names if n in cls._value2member_map_]
        return max(known, key=lambda r: r.rank) if known else None


# Support staff act in the named organisation with an operator's rights: they
# can start, pause and terminate a customer's jobs but not mint keys there.
SUPPORT_ROLE = Role.OPERATOR


@dataclass(frozen=True)
class Identity:
    """The caller of one request, resolved by the identity middleware."""

    org_id: str
    actor: str  # JWT sub, "key:<id>" for an API key
    actor_name: str
    role: Role | None
    method: str  # "jwt", "api_key", "disabled" (AUTH_DISABLED), "cli"
    support: bool = False  # acting in org_id through the support role
    home_org: str | None = None  # a support actor's own organisation, if its token names one

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "org_id": self.org_id,
            "actor": self.actor,
            "actor_name": self.actor_name,
            "role": self.role.value if self.role else None,
            "method": self.method,
            "support": self.support,
        }
        if self.support:
            body["home_org"] = self.home_org
        return body

    def who(self) -> dict[str, Any]:
        """What a job's ``created_by`` and an audit event record of the actor."""
        who: dict[str, Any] = {"actor": self.actor, "actor_name": self.actor_name, "method": self.method}
        if self.support:
            who.update(support=True, home_org=self.home_org)
        return who


IDENTITY_KEY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


def caller(request: web.Request) -> Identity:
    """The identity the middleware resolved for this request."""
    return request[IDENTITY_KEY]


def check_role(request: web.Request, role: Role) -> None:
    """A 403 naming ``role`` unless the caller has it: for a handler whose
    role depends on what the body asks (a download ticket for a new export
    starts work; one for a finished result does not)."""
    identity = caller(request)
    if identity.role is None or not identity.role.allows(role):
        raise Forbidden(
            f"This action needs the {role.value} role; you have {identity.role.value if identity.role else 'no role'}.",
            required_role=role.value,
        )


def requires(role: Role) -> Callable[[H], H]:
    """Declares the least role a handler needs; a lower one is a 403 naming it.
    Every authenticated route needs at least viewer whether or not it says so."""

    def decorate(handler: H) -> H:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            check_role(request, role)
            return await handler(request)

        checked.required_role = role  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def public(reason: str) -> Callable[[H], H]:
    """Marks an /api handler that needs no bearer token, with the reason why
    (a download authorised by its own single-use ticket, the API document).
    The router test lists every such route, so none is opened by accident."""

    def decorate(handler: H) -> H:
        handler.public_reason = reason  # type: ignore[attr-defined]
        return handler

    return decorate


def public_reason(handler: Any) -> str | None:
    return getattr(handler, "public_reason", None)


def required_role(handler: Any) -> Role:
    return getattr(handler, "required_role", Role.VIEWER)
