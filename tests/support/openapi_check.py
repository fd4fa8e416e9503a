"""Checks real responses against the OpenAPI document: every response an
integration test receives through the test client is looked up in the
document (path template, method, status, content type) and, when it is JSON,
validated against its schema. A mismatch fails the test that saw it."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from service.api.openapi import document

JSON_TYPES = ("application/json", "application/problem+json")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


class ResponseChecker:
    def __init__(self) -> None:
        self.doc = document()
        # Literal paths before templated ones: /jobs/import is not /jobs/{job_id}.
        templates = sorted(self.doc["paths"], key=lambda p: (p.count("{"), p))
        self.routes = [(_template_regex(t), t) for t in templates]
        self.failures: list[str] = []
        self.checked = 0

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for regex, template in self.routes:
            if regex.match(path) and method.lower() in self.doc["paths"][template]:
                return template, self.doc["paths"][template][method.lower()]
        return None

    def response_spec(self, operation: dict[str, Any], status: int) -> dict[str, Any] | None:
        spec = operation["responses"].get(str(status)) or operation["responses"].get("default")
        if spec and "$ref" in spec:
            name = spec["$ref"].rsplit("/", 1)[1]
            spec = self.doc["components"]["responses"][name]
        return spec

    async def check(self, method: str, resp: aiohttp.ClientResponse) -> None:
        found = self.operation(method, resp.url.path)
        if found is None:
            return  # not an API route (or a method the route lacks: a 405)
        template, operation = found
        where = f"{method} {resp.url.path} ({template}) -> {resp.status}"
        spec = self.response_spec(operation, resp.status)
        if spec is None:
            self.failures.append(f"{where}: status {resp.status} is not documented")
            return
        content = spec.get("content", {})
        ctype = resp.content_type
        if content and ctype not in content:
            self.failures.append(f"{where}: content type {ctype!r} is not documented (has {sorted(content)})")
            return
        self.checked += 1
        if ctype not in JSON_TYPES:
            return  # a stream (CSV, events): status and type are what the document promises
        body = await resp.json(content_type=None)
        schema = {**content[ctype]["schema"], "components": self.doc["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path))
        for error in errors[:3]:
            self.failures.append(f"{where}: {'/'.join(map(str, error.path)) or '(body)'}: {error.message[:300]}")

    def watch(self, client: TestClient) -> TestClient:
        """Routes every request of ``client`` through the check."""
        request = client._request

        async def checked(method: str, path: Any, **kwargs: Any) -> aiohttp.ClientResponse:
            resp = await request(method, path, **kwargs)
            await self.check(method, resp)
            return resp

        client._request = checked  # type: ignore[method-assign]
        return client
