"""GET / serves the browser console from the app itself: correct types,
caching a browser can rely on, nothing fetched from elsewhere, small."""

from __future__ import annotations

import re

from service.api.console import STATIC_DIR, load_console

MAX_PAGE_BYTES = 200 * 1024


async def test_the_console_page_is_served_at_the_root_and_revalidated_on_every_load(client):
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    html = await resp.text()
    version = load_console().version
    assert f'src="/console/{version}/js/main.js"' in html and "{{version}}" not in html

    again = await client.get("/", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""


async def test_every_asset_the_page_names_is_served_with_its_type_and_cached_for_a_year(client):
    html = await (await client.get("/")).text()
    names = re.findall(r'(?:src|href)="(/console/[^"]+)"', html)
    assert len(names) >= 3
    for path in names:
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        expected = "text/css" if path.endswith(".css") else "text/javascript"
        assert resp.headers["Content-Type"] == f"{expected}; charset=utf-8", path


async def test_an_asset_asked_for_under_an_old_version_is_not_cached_under_that_name(client):
    resp = await client.get("/console/0ld0ld0ld0ld/console.css")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"


async def test_an_unknown_console_file_is_a_404_problem(client):
    resp = await client.get(f"/console/{load_console().version}/js/nope.js")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/problem+json")


async def test_the_console_is_read_only(client):
    for method in ("POST", "PUT", "DELETE"):
        resp = await client.request(method, "/")
        assert resp.status == 405, method
    assert (await client.head("/")).status == 200


def test_the_whole_console_weighs_under_200_kb_and_loads_nothing_from_elsewhere():
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < MAX_PAGE_BYTES
    for path in files:
        text = path.read_text()
        # No CDN, no web fonts, no scripts from anywhere but the service.
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path
        assert "@import" not in text and "url(http" not in text, path
