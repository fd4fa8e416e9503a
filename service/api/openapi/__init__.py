"""The API's contract: the OpenAPI 3.1 document at /api/v1/openapi.json, and
Swagger UI at /api/v1/docs, served from the service's own package data
(swagger-ui/ beside this file, vendored from swagger-ui-dist by scripts/vendor-swagger-ui;
never a CDN). The document is built from paths.py and schemas.py; tests
check it against the router and every response the integration tests see."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from aiohttp import web

from ... import __version__
from ...auth.identity import public
from ..common import query_params
from .paths import paths, problem_responses
from .schemas import schemas

DOCS_ROUTE = "/api/v1/docs"
# The Swagger UI files the page loads, and nothing else of the package.
ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui-standalone-preset.js": "application/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# Swagger UI's scripts come from this origin only; it sets style attributes
# (so 'unsafe-inline' styles) and inline SVG images (data:).
DOCS_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
};
"""
PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>collect-jobs API</title>
<link rel="stylesheet" href="{DOCS_ROUTE}/swagger-ui.css">
<link rel="stylesheet" href="{DOCS_ROUTE}/index.css">
<link rel="icon" type="image/png" href="{DOCS_ROUTE}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_ROUTE}/swagger-ui-bundle.js"></script>
<script src="{DOCS_ROUTE}/swagger-ui-standalone-preset.js"></script>
<script src="{DOCS_ROUTE}/init.js"></script>
</body>
</html>
"""


@functools.cache
def document() -> dict[str, Any]:
    """The whole document; a pure function of the code, so built once."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "collect-jobs",
            "version": __version__,
            "description": "Long-running data jobs (CSV import, export, bulk teams) that can be paused, resumed "
            "and terminated with rollback. Every error is application/problem+json; an unknown query "
            "parameter is a 400 naming it.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "jobs", "description": "create, watch and control jobs"},
            {"name": "downloads", "description": "export results and streamed exports"},
            {"name": "probes"},
            {"name": "docs"},
        ],
        "paths": paths(),
        "components": {"schemas": schemas(), "responses": problem_responses()},
    }


@public("the API contract: no organisation's data")
async def openapi_json(request: web.Request) -> web.Response:
    query_params(request, ())
    return web.json_response(document(), headers={"Cache-Control": "no-cache"})


@public("the API documentation page for people: no organisation's data")
async def docs_page(request: web.Request) -> web.Response:
    query_params(request, ())
    return web.Response(text=PAGE, content_type="text/html", headers=DOCS_SECURITY_HEADERS)


@public("the documentation page's static files")
async def docs_asset(request: web.Request) -> web.Response:
    """The page's scripts and styles: a fixed list of files, nothing else."""
    name = request.match_info["name"]
    if name == "init.js":
        return web.Response(text=INIT_JS, content_type="application/javascript")
    if name not in ASSETS:
        raise web.HTTPNotFound()
    body = (resources.files(__package__) / "swagger-ui" / name).read_bytes()
    return web.Response(body=body, content_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})
