"""The browser console: GET / and its static assets, served by the app itself.

Plain HTML, JavaScript modules and one CSS file: no build step, nothing
fetched from a CDN (clusters are often air-gapped). The files are read once
when the app is created (they are small; a unit test keeps them under
200 KB) and served from memory. Assets live under a path that names a hash of
all the files, so a browser may cache them for a year; the page itself is
revalidated on every load, so a new deploy is picked up at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# The console talks only to this origin; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Console:
    version: str
    index: Asset
    assets: dict[str, Asset]


def _asset(body: bytes, suffix: str) -> Asset:
    return Asset(body, CONTENT_TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def load_console(directory: Path = STATIC_DIR) -> Console:
    """Reads every asset, and names the set by a hash of all of them."""
    files = {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.suffix in CONTENT_TYPES and path.name != "index.html"
    }
    digest = hashlib.sha256()
    for name, body in files.items():
        digest.update(name.encode() + b"\0" + body + b"\0")
    version = digest.hexdigest()[:12]
    index = (directory / "index.html").read_bytes().replace(b"{{version}}", version.encode())
    return Console(
        version=version,
        index=_asset(index, ".html"),
        assets={name: _asset(body, Path(name).suffix) for name, body in files.items()},
    )


def _respond(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, **SECURITY_HEADERS}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers)


def routes(console: Console) -> list[web.RouteDef]:
    """GET (and HEAD) only: serving the console changes nothing."""

    async def index(request: web.Request) -> web.Response:
        return _respond(request, console.index, REVALIDATE)

    async def asset(request: web.Request) -> web.Response:
        found = console.assets.get(request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound(text="No such console file.")
        # A page loaded before a deploy asks for the old version: it gets the
        # current file, which must not be cached under the old name.
        current = request.match_info["version"] == console.version
        return _respond(request, found, IMMUTABLE if current else REVALIDATE)

    return [
        web.get("/", index, name="console"),
        web.get("/console/{version}/{path:.+}", asset, name="console-asset"),
    ]
