"""Every error leaves as application/problem+json; never a traceback, never a
200, and never the text of an internal error: a 5xx says a plain message and an
error id, and the detail goes to the log line that carries the same id."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pymongo.errors import ConnectionFailure

from .api.common import checked_body, takes_raw_body
from .errors import BadRequest, ServiceError, Unavailable, UnsupportedMediaType

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Every response: no sniffing a CSV or JSON body into HTML, and a Server
# header that names no version. An HTML page without a policy of its own (the
# console and the API docs set theirs) gets the strictest.
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
SERVER = "collect-jobs"
HTML_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for every response the app sends, errors included."""
    response.headers["Server"] = SERVER
    response.headers.update({k: v for k, v in NOSNIFF.items() if k not in response.headers})
    if response.content_type == "text/html":
        for name, value in HTML_SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)


def server_error(error: ServiceError, request: web.Request, detail: object, exc_info: bool = False) -> web.Response:
    """A 5xx: ``error``'s own plain message and a fresh error id for the caller;
    ``detail`` (an exception's text, which may name hosts, timeouts, internals)
    only in the log line with that id."""
    error_id = secrets.token_hex(8)
    log.error(
        "%s %s: %s %s (error id %s)",
        request.method,
        request.path,
        error.status,
        detail,
        error_id,
        exc_info=exc_info,
        extra={"error_id": error_id},
    )
    error.detail = f"{error.detail} Error id {error_id}."
    error.extra["error_id"] = error_id
    return problem_response(error, request)


def problem_response(error: ServiceError, request: web.Request) -> web.Response:
    return web.Response(
        status=error.status,
        text=json.dumps(error.problem(instance=request.path)),
        content_type=PROBLEM_JSON,
        headers=error.headers,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServiceError as error:
        if error.status >= 500:
            return server_error(error, request, error.detail)
        return problem_response(error, request)
    except ConnectionFailure as exc:
        response = server_error(
            Unavailable("The database is unavailable; retry shortly."), request, f"database unavailable: {exc}"
        )
        response.headers["Retry-After"] = "5"
        return response
    except HttpProcessingError as exc:
        # A malformed body part (a multipart header aiohttp cannot parse, say):
        # the client's fault, not ours (found by fuzzing).
        return problem_response(BadRequest(f"The request is malformed: {str(exc.message)[:200]}"), request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = ServiceError(exc.reason if exc.text is None or exc.text.startswith(f"{exc.status}:") else exc.text)
        problem.status, problem.title = exc.status, exc.reason
        problem.slug = exc.reason.lower().replace(" ", "-")
        response = problem_response(problem, request)
        for name, value in exc.headers.items():  # Allow, Content-Range, ...
            if name not in ("Content-Type", "Content-Length"):
                response.headers[name] = value
        return response
    except ConnectionResetError:
        # The client left mid-response (a stream it stopped reading): not a
        # server error; aiohttp drops the connection quietly (found by fuzzing).
        raise
    except Exception as exc:
        problem = ServiceError("An unexpected error occurred; it has been logged.")
        return server_error(problem, request, f"unhandled {type(exc).__name__}", exc_info=True)


@web.middleware
async def body_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Limits on every /api request body, before its handler (or an idempotent
    replay's digest) reads it. A Content-Encoding other than identity is a 415:
    aiohttp would inflate it, and every size limit (ours, an ingress's) would
    see only the compressed bytes (a 200 KB gzip is 50 MB of CSV). Any other
    body is a small JSON object unless the route reads its own (@raw_body)."""
    if request.path.startswith("/api/") and request.body_exists:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaType(
                f"Content-Encoding {encoding[:40]!r} is not accepted: send the body uncompressed (identity).",
                parameter="Content-Encoding",
            )
        if not takes_raw_body(request.match_info.handler):
            await checked_body(request)
    return await handler(request)
