"""Probes. Liveness never touches the database: a database outage must not make
Kubernetes restart healthy pods; readiness does."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import Unavailable
from ..typedefs import DB_KEY, MANAGER_KEY
from .common import json_response

READY_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if not request.app[MANAGER_KEY].accepting:
        raise Unavailable("The service is shutting down.")
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await request.app[DB_KEY].ping()
    except Exception as exc:
        raise Unavailable(f"The database does not answer: {type(exc).__name__}") from None
    return json_response({"status": "ready"})
