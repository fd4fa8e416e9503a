"""Findings 7 and 10: what a tenant sees of the server. A 500 or 503 says a
plain message and an error id; the detail goes to the log line with that id.
Every HTML page carries a CSP with frame-ancestors 'none', nosniff and a
Referrer-Policy; no response names the aiohttp version."""

from __future__ import annotations

import logging

from pymongo.errors import ServerSelectionTimeoutError

from service.app import create_app

from ..support.authkit import auth_settings, bearer

SECRET = "mongodb://admin:hunter2@10.1.2.3:27017 (configured timeouts: timeoutMS: 30000.0ms)"


async def test_an_internal_error_shows_a_plain_message_and_an_id_and_logs_the_detail_with_it(
    db, aiohttp_client, settings, jwks, idp_key, caplog
):
    async def explode(request):
        raise RuntimeError(SECRET)

    async def database_gone(request):
        raise ServerSelectionTimeoutError(f"127.0.0.1:27891: timed out, {SECRET}")

    app = create_app(settings.replace(**auth_settings(jwks.url)))
    app.router.add_get("/api/v1/test-explode", explode)
    app.router.add_get("/api/v1/test-database-gone", database_gone)
    client = await aiohttp_client(app)
    caplog.set_level(logging.INFO)
    for path, status in (("/api/v1/test-explode", 500), ("/api/v1/test-database-gone", 503)):
        resp = await client.get(path, headers=bearer(idp_key.mint(roles=["viewer"])))
        text = await resp.text()
        assert resp.status == status, text
        assert "hunter2" not in text and "27891" not in text and "RuntimeError" not in text
        problem = await resp.json(content_type=None)
        error_id = problem["error_id"]
        assert len(error_id) >= 12 and error_id in problem["detail"]
        logged = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
        assert logged, "no log line carries the error id"
        assert any("hunter2" in (r.getMessage() + str(r.exc_info and r.exc_info[1])) for r in logged)


async def test_every_html_page_has_the_security_headers_and_no_response_names_the_server_version(orgs, auth_client):
    for path in ("/", "/api/v1/docs"):
        resp = await auth_client.get(path)
        assert resp.status == 200 and resp.content_type == "text/html", path
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src" in csp, (path, csp)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
        assert resp.headers.get("Referrer-Policy") == "no-referrer", path
    for path in ("/", "/api/v1/docs", "/healthz", "/metrics", "/api/v1/openapi.json", "/api/v1/jobs", "/nowhere"):
        resp = await orgs.viewer.get(path)
        server = resp.headers.get("Server", "")
        assert "aiohttp" not in server.lower() and not any(c.isdigit() for c in server), (path, server)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
