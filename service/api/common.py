"""Helpers shared by the handlers: the caller's org, query parameters, JSON."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..jobs.model import job_json
from ..typedefs import SETTINGS_KEY

DATASET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def org_of(request: web.Request) -> str:
    """The caller's organisation. Until authentication exists every request
    belongs to DEFAULT_ORG_ID; this is the one place that will change."""
    return request.app[SETTINGS_KEY].default_org_id


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
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}", parameter=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}", parameter=name)
    return value


def choice_param(query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = query.get(name) or default
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}", parameter=name)
    return value


def error_policy(query: Mapping[str, str]) -> tuple[str, int]:
    """on_error (skip or fail) and max_errors, shared by the jobs that read rows."""
    on_error = choice_param(query, "on_error", ("skip", "fail"), "skip")
    return on_error, int_param(query, "max_errors", 1000, 0, 1_000_000_000)


def bool_param(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (query.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {raw[:40]!r}", parameter=name)


def list_param(query: Mapping[str, str], name: str, choices: frozenset[str] | None = None) -> list[str]:
    values = [v.strip() for raw in query.getall(name, []) for v in raw.split(",") if v.strip()]
    if choices is not None:
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise BadRequest(
                f"{name} must be among {', '.join(sorted(choices))}; unknown: {', '.join(unknown)}", parameter=name
            )
    return values


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o, default=str))


def job_response(doc: dict[str, Any], status: int = 200) -> web.Response:
    body = job_json(doc)
    headers = {"Location": body["links"]["self"]} if status == 202 else None
    return json_response(body, status=status, headers=headers)
