"""Helpers shared by the handlers: the caller's org, query parameters, JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from ..auth.identity import caller
from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ..jobs.model import job_json

DATASET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Every JSON body of the API is a small object (an export's options, a key's
# name, a reason): these bound what reading one may cost. json.loads recurses
# per level, so a body nested 200,000 deep would raise RecursionError.
MAX_JSON_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
# The bytes that matter for nesting: brackets, and what starts, escapes or ends a string.
_JSON_SYNTAX = re.compile(rb'[\[\]{}"\\]')
_OPENERS, _CLOSERS, _QUOTE, _BACKSLASH = frozenset(b"[{"), frozenset(b"]}"), ord('"'), ord("\\")
# A Range number longer than this is past the end of any file.
_MAX_RANGE_DIGITS = 18
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def org_of(request: web.Request) -> str:
    """The caller's organisation, as the identity middleware resolved it (with
    AUTH_DISABLED=true, DEFAULT_ORG_ID)."""
    return caller(request).org_id


def query_params(request: web.Request, allowed: Iterable[str], repeatable: Iterable[str] = ()) -> MultiMapping[str]:
    """The request's query, once it names only ``allowed`` parameters. Every
    handler declares what it reads: a typo (``type=`` for ``types=``) or a
    parameter this endpoint does not have (``dryrun`` for ``dry_run``) is a 400
    naming it, never a job started without it. Only ``repeatable`` ones may
    be given twice; for any other, which value wins would be a guess."""
    names = frozenset(allowed)
    unknown = sorted(set(request.query) - names)
    if unknown:
        accepts = ", ".join(sorted(names)) if names else "no query parameters"
        raise BadRequest(
            f"Unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"this endpoint accepts {accepts}.",
            parameter=unknown[0],
            unknown=unknown,
        )
    once = names - frozenset(repeatable)
    for name in sorted(once):
        if len(request.query.getall(name, ())) > 1:
            raise BadRequest(f"{name} is given more than once.", parameter=name)
    return request.query


def dataset_param(value: object) -> str:
    if value is not None and not isinstance(value, str):
        raise BadRequest("The dataset must be a string.", parameter="dataset")
    if not value:
        raise BadRequest("The dataset parameter is required.", parameter="dataset")
    if not DATASET_RE.fullmatch(value):
        raise BadRequest(
            f"Invalid dataset name {value[:80]!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit.",
            parameter="dataset",
        )
    return value


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}", parameter=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}", parameter=name)
    return value


def choice_param(query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = query.get(name, default)
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}", parameter=name)
    return value


def error_policy(query: Mapping[str, str]) -> tuple[str, int]:
    """on_error (skip or fail) and max_errors, shared by the jobs that read rows."""
    on_error = choice_param(query, "on_error", ("skip", "fail"), "skip")
    return on_error, int_param(query, "max_errors", 1000, 0, 1_000_000_000)


TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


def bool_param(query: Mapping[str, str], name: str, default: bool) -> bool:
    """The one boolean parser of the API. ``?dry_run`` with no value is a 400,
    not false: guessing would start the very job the caller meant to preview."""
    if name not in query:
        return default
    raw = query[name].strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise BadRequest(f"{name} must be true or false (or 1/0, yes/no), got {raw[:40]!r}", parameter=name)


def list_param(query: MultiMapping[str], name: str, choices: frozenset[str] | None = None) -> list[str]:
    values = [v.strip() for raw in query.getall(name, []) for v in raw.split(",")]
    if "" in values:  # `kind=`, `state=a,,b`: a filter left blank is a mistake, not "any"
        raise BadRequest(f"{name} has an empty value; leave the parameter out to mean any.", parameter=name)
    if choices is not None:
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise BadRequest(f"{name} must be among {', '.join(sorted(choices))}; unknown: {', '.join(unknown)}", parameter=name)
    return values


def raw_body(handler: Any) -> Any:
    """Marks a handler that reads its body itself as a stream (a CSV upload), or
    refuses one: the JSON body limits (``checked_body``) do not apply to it."""
    handler.raw_body = True
    return handler


def takes_raw_body(handler: Any) -> bool:
    return getattr(handler, "raw_body", False)


async def checked_body(request: web.Request) -> bytes:
    """The request's body, read once (aiohttp keeps it for request.json()),
    after the JSON limits: 413 over MAX_JSON_BYTES, 400 nested deeper than
    MAX_JSON_DEPTH. The body middleware calls it before any handler of a route
    without @raw_body, so nothing (a handler, an idempotent replay's digest)
    parses a body that could exhaust the stack."""
    too_large = PayloadTooLarge(f"A JSON body may be at most {MAX_JSON_BYTES} bytes.", limit=MAX_JSON_BYTES)
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # aiohttp's own client_max_size
        raise too_large from None
    if len(raw) > MAX_JSON_BYTES:
        raise too_large
    if json_too_deep(raw, MAX_JSON_DEPTH):
        raise BadRequest(f"The JSON body is nested too deep: at most {MAX_JSON_DEPTH} levels of arrays and objects.")
    return raw


def json_too_deep(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``raw`` nest deeper than ``limit``; a
    scan of its syntax bytes only, in linear time, that never recurses."""
    depth, in_string, skip = 0, False, -1
    for match in _JSON_SYNTAX.finditer(raw):
        at = match.start()
        if at < skip:  # the character after a backslash
            continue
        byte = raw[at]
        if in_string:
            if byte == _BACKSLASH:
                skip = at + 2
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


async def json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object; an empty body is {} when allowed."""
    raw = await checked_body(request)
    if allow_empty and not raw:
        return {}
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.", accepted=["application/json"])
    try:
        body = json.loads(raw)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4,300 digits
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def byte_range(header: str | None, length: int) -> tuple[int, int] | None:
    """A single ``Range: bytes=first-last`` (or ``bytes=-suffix``) of a file of
    ``length`` bytes, as [start, end); None for no range or one this service
    does not serve (several ranges, other units: the whole file is sent). A
    range past the end is a 416; numbers of any length are read without
    int()'s 4,300-digit limit (a longer one is past the end of any file)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if not match or not match.group(1) + match.group(2):
        return None
    first, last = (_range_number(g) for g in match.groups())
    if first is not None:
        start, end = first, (min(last + 1, length) if last is not None else length)
    else:
        assert last is not None
        start, end = max(0, length - last), length
    if start >= length or start >= end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{length}"})
    return start, end


def _range_number(digits: str) -> int | None:
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return 10**_MAX_RANGE_DIGITS if len(digits) > _MAX_RANGE_DIGITS else int(digits)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o, default=str))


def job_response(doc: dict[str, Any], status: int = 200) -> web.Response:
    body = job_json(doc)
    headers = {"Location": body["links"]["self"]} if status == 202 else None
    return json_response(body, status=status, headers=headers)
