"""Two organisations over every route of the app. The router is enumerated, so a
route added without a case here fails the test until someone decides how it is
protected: another org's token gets a 404 or an empty list (never a 403, so ids
do not leak), no token gets a 401, and only the routes listed in OPEN, each with
its reason, answer without one."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.api.console import load_console
from service.auth.identity import public_reason

from ..support.authkit import ORG_A, ORG_B, As
from ..support.helpers import make_csv, sheet, start_import, team_rows, wait_for_state

# Routes that answer without a token, and why that is safe.
OPEN = {
    ("GET", "/healthz"): "liveness probe: the event loop answers; no data",
    ("GET", "/readyz"): "readiness probe: the database answers; no data",
    ("GET", "/metrics"): "Prometheus scrape: counts by kind and state, no organisation's data",
    ("GET", "/"): "the console's page: static HTML, it signs in through the API",
    ("GET", "/console/{version}/{path}"): "the console's static files",
    ("GET", "/api/v1/openapi.json"): "the API contract",
    ("GET", "/api/v1/docs"): "the API documentation page",
    ("GET", "/api/v1/docs/{name}"): "the documentation page's static files",
    ("GET", "/api/v1/downloads/{ticket}"): "authorised by its single-use ticket, created by an authenticated POST",
}
# How the open routes with path parameters are asked for, and what they answer.
OPEN_REQUESTS = {
    ("GET", "/console/{version}/{path}"): (lambda: f"/console/{load_console().version}/console.css", 200),
    ("GET", "/api/v1/docs/{name}"): (lambda: "/api/v1/docs/swagger-ui.css", 200),
    ("GET", "/api/v1/downloads/{ticket}"): (lambda: "/api/v1/downloads/no-such-ticket", 404),
}


@dataclass
class Case:
    """How org B calls a route aimed at org A's resources, and what it must get."""

    path: str
    expect: str  # "404"; "empty:<field>" (a list of none of A's); "own" (acts in B, not A)
    kwargs: dict[str, Any] = field(default_factory=dict)


def cases(a: dict[str, str]) -> dict[tuple[str, str], Case]:
    job, export, key = a["job"], a["export"], a["key"]
    csv_body = {"data": make_csv(3), "headers": {"Content-Type": "text/csv"}}
    return {
        ("GET", "/api/v1/jobs"): Case("/api/v1/jobs", "empty:jobs"),
        ("GET", "/api/v1/jobs/{job_id}"): Case(f"/api/v1/jobs/{job}", "404"),
        ("GET", "/api/v1/jobs/{job_id}/events"): Case(f"/api/v1/jobs/{job}/events", "404"),
        ("GET", "/api/v1/jobs/{job_id}/result"): Case(f"/api/v1/jobs/{export}/result", "404"),
        ("POST", "/api/v1/jobs/{job_id}/{action}"): Case(f"/api/v1/jobs/{job}/terminate", "404"),
        ("DELETE", "/api/v1/jobs/{job_id}"): Case(f"/api/v1/jobs/{export}", "404"),
        ("POST", "/api/v1/jobs/{job_id}/undo"): Case(f"/api/v1/jobs/{job}/undo", "404"),
        # Every job of the caller's org (filter {}): none of A's is matched.
        ("POST", "/api/v1/jobs/{action}"): Case("/api/v1/jobs/terminate", "none:matched", {"json": {"filter": {}}}),
        ("POST", "/api/v1/exports/{dataset}.csv"): Case("/api/v1/exports/people.csv", "404"),
        ("GET", "/api/v1/datasets/{dataset}"): Case("/api/v1/datasets/people", "404"),
        ("POST", "/api/v1/downloads"): Case("/api/v1/downloads", "404", {"json": {"job_id": export}}),
        ("POST", "/api/v1/jobs/export"): Case("/api/v1/jobs/export", "404", {"json": {"dataset": "people"}}),
        ("GET", "/api/v1/api-keys"): Case("/api/v1/api-keys", "empty:api_keys"),
        ("DELETE", "/api/v1/api-keys/{key_id}"): Case(f"/api/v1/api-keys/{key}", "404"),
        ("GET", "/api/v1/audit"): Case(f"/api/v1/audit?job_id={job}", "empty:events"),
        ("GET", "/api/v1/me"): Case("/api/v1/me", "own"),
        ("POST", "/api/v1/api-keys"): Case("/api/v1/api-keys", "own", {"json": {"name": "b's", "role": "viewer"}}),
        ("POST", "/api/v1/jobs/import"): Case("/api/v1/jobs/import?dataset=people", "own", csv_body),
        ("POST", "/api/v1/jobs/teams"): Case(
            "/api/v1/jobs/teams", "own", {"data": sheet(team_rows(1)), "headers": {"Content-Type": "text/csv"}}
        ),
    }


def routes(app) -> set[tuple[str, str]]:
    found = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    handlers = {(r.method, r.resource.canonical): r.handler for r in app.router.routes()}
    for method, path in handlers:
        if method == "HEAD":  # aiohttp's automatic HEAD of a GET route: the same handler
            assert handlers[("HEAD", path)] == handlers[("GET", path)]
    return found


@pytest.fixture
async def org_a(auth_client, idp_key) -> dict[str, Any]:
    """Org A's resources: a completed import, a completed export, an API key."""
    alice = As(auth_client, idp_key.mint("alice", org=ORG_A, roles=["admin"]))
    job = await start_import(alice, make_csv(20), types="id:int")
    await wait_for_state(alice, job["id"], "completed")
    resp = await alice.post("/api/v1/jobs/export", json={"dataset": "people"})
    assert resp.status == 202, await resp.text()
    export = (await resp.json())["id"]
    await wait_for_state(alice, export, "completed")
    resp = await alice.post("/api/v1/api-keys", json={"name": "a's pipeline", "role": "operator"})
    assert resp.status == 201, await resp.text()
    return {"job": job["id"], "export": export, "key": (await resp.json())["id"], "alice": alice}


def test_every_route_is_either_covered_here_or_open_for_a_stated_reason(auth_client):
    app = auth_client.app
    listed = set(cases({"job": "j", "export": "e", "key": "k"})) | set(OPEN)
    assert routes(app) == listed, "a route is missing from this test (add a Case, or to OPEN with a reason)"
    for route in app.router.routes():
        key = (route.method, route.resource.canonical)
        api = route.resource.canonical.startswith("/api/")
        if key in OPEN and api:
            assert public_reason(route.handler), f"{key} is listed as open but not marked @public"
        if key not in OPEN and route.method != "HEAD":
            assert api and public_reason(route.handler) is None, f"{key} answers without a token but is not in OPEN"


async def test_another_orgs_resources_are_404_or_absent_from_every_route(auth_client, idp_key, org_a):
    bob = As(auth_client, idp_key.mint("bob", org=ORG_B, roles=["admin"]))
    ordered = sorted(cases(org_a).items(), key=lambda kv: kv[1].expect == "own")  # reads before B creates anything
    for (method, _), case in ordered:
        kwargs = dict(case.kwargs)
        if "data" in kwargs:
            kwargs["data"] = io.BytesIO(kwargs["data"])
        resp = await bob.request(method, case.path, **kwargs)
        body = await resp.json(content_type=None)
        if case.expect == "404":
            assert resp.status == 404, (method, case.path, resp.status, body)
        elif case.expect.startswith("none:"):
            assert resp.status == 200 and body[case.expect.split(":")[1]] == 0, (method, case.path, body)
        elif case.expect.startswith("empty:"):
            assert resp.status == 200, (method, case.path, body)
            assert body[case.expect.split(":")[1]] == [], (method, case.path, body)
        else:
            assert resp.status in (200, 201, 202), (method, case.path, body)
            assert body["org_id"] == ORG_B, (method, case.path, body)
    # Org A's things are untouched: its job was not terminated, its key still works.
    alice = org_a["alice"]
    resp = await alice.get(f"/api/v1/jobs/{org_a['job']}")
    assert (await resp.json())["state"] == "completed"
    keys = await (await alice.get("/api/v1/api-keys")).json()
    assert [k["revoked_at"] for k in keys["api_keys"] if k["id"] == org_a["key"]] == [None]
    # And org B's own lists hold only B's.
    jobs = await (await bob.get("/api/v1/jobs")).json()
    assert jobs["jobs"] and {j["org_id"] for j in jobs["jobs"]} == {ORG_B}
    for job in jobs["jobs"]:
        await wait_for_state(bob, job["id"], "completed", "failed")


async def test_every_protected_route_is_401_without_a_token_and_open_routes_answer(auth_client, org_a):
    for (method, _), case in cases(org_a).items():
        kwargs = dict(case.kwargs)
        if "data" in kwargs:
            kwargs["data"] = io.BytesIO(kwargs["data"])
        resp = await auth_client.request(method, case.path, **kwargs)
        assert resp.status == 401, (method, case.path, resp.status)
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    for method, path in OPEN:
        make, status = OPEN_REQUESTS.get((method, path), (lambda path=path: path, 200))
        resp = await auth_client.request(method, make())
        assert resp.status == status, (method, path, resp.status)
    # Nothing was created by the refused requests.
    jobs = await (await org_a["alice"].get("/api/v1/jobs")).json()
    assert len(jobs["jobs"]) == 2
