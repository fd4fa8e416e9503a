"""The written contract: the OpenAPI document matches the router, is valid
OpenAPI 3.1, is served with its docs page (no CDN), and parameters are
handled the one way it describes."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from service.api.openapi import document
from service.jobs.model import ACTIONS
from service.jobs.states import BULK_ACTIONS

from ..support.helpers import make_csv, sheet, start_import, team_rows

# Routes that are not API operations, each with its reason:
NOT_OPERATIONS = {
    # Swagger UI's scripts and styles behind /api/v1/docs: static files.
    ("GET", "/api/v1/docs/{name}"),
    # The browser console's scripts and styles (service/api/console.py): static files.
    ("GET", "/console/{version}/{path}"),
}


def router_operations(app) -> set[tuple[str, str]]:
    ops = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside each GET; HEAD answers like GET without a body
        path = route.resource.canonical
        if (route.method, path) in NOT_OPERATIONS:
            continue
        if path == "/api/v1/jobs/{action}":
            # Bulk control: one route, each action documented.
            ops |= {(route.method, f"/api/v1/jobs/{name}") for name in BULK_ACTIONS}
            continue
        if path.endswith("/{action}"):
            # One route serves every job action; the document lists each.
            ops |= {(route.method, path.replace("{action}", name)) for name in ACTIONS}
            continue
        ops.add((route.method, path))
    return ops


def document_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document()["paths"].items() for method in item}


async def test_every_route_has_an_entry_in_the_document_and_every_entry_a_route(client):
    routes, documented = router_operations(client.app), document_operations()
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations without a route"


async def test_the_document_is_valid_openapi_3_1_and_is_served_as_json(client):
    validate(document())
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    served = await resp.json()
    assert served["openapi"] == "3.1.0"
    assert served == document()


async def test_the_docs_page_loads_swagger_ui_from_the_service_itself(client):
    resp = await client.get("/api/v1/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/api/v1/docs/") for a in assets), assets
    for asset in assets:
        got = await client.get(asset)
        assert got.status == 200, asset
        assert len(await got.read()) > 100
    init = await (await client.get("/api/v1/docs/init.js")).text()
    assert '"/api/v1/openapi.json"' in init
    bundle = await (await client.get("/api/v1/docs/swagger-ui-bundle.js")).text()
    assert "SwaggerUIBundle" in bundle
    assert (await client.get("/api/v1/docs/..%2F..%2Fcore.py")).status == 404


async def test_a_misspelled_dry_run_on_an_import_is_a_400_naming_it_and_starts_nothing(client, db):
    resp = await client.post(
        "/api/v1/jobs/import", params={"dataset": "x", "dryrun": "true"}, data=make_csv(5), headers={"Content-Type": "text/csv"}
    )
    body = await resp.json(content_type=None)
    assert resp.status == 400, body
    assert body["parameter"] == "dryrun" and body["unknown"] == ["dryrun"]
    assert "'dryrun'" in body["detail"] and "dry_run" in body["detail"]
    assert await db.jobs.count_documents({}) == 0
    assert await db.db["uploads.files"].count_documents({}) == 0


async def test_a_typo_in_a_parameter_name_is_a_400_not_an_untyped_import(client, db):
    body = await start_import(client, make_csv(5), expect=400, type="id:int")
    assert body["parameter"] == "type"
    assert await db.jobs.count_documents({}) == 0


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/v1/jobs", {"states": "running"}),
        ("GET", "/api/v1/jobs/0123456789abcdef01234567", {"verbose": "1"}),
        ("POST", "/api/v1/jobs/0123456789abcdef01234567/pause", {"force": "true"}),
        ("GET", "/api/v1/jobs/0123456789abcdef01234567/result", {"x": "1"}),
        ("GET", "/api/v1/jobs/0123456789abcdef01234567/events", {"interval": "100"}),
        ("POST", "/api/v1/exports/people.csv", {"field": "id"}),
        ("GET", "/api/v1/openapi.json", {"v": "2"}),
    ],
)
async def test_every_endpoint_rejects_unknown_query_parameters(client, method, path, params):
    resp = await client.request(method, path, params=params)
    body = await resp.json(content_type=None)
    assert resp.status == 400, body
    assert body["unknown"] == list(params)


@pytest.mark.parametrize("value", ["maybe", "", "tru", "2"])
async def test_a_boolean_parameter_with_an_unknown_value_is_a_400(client, db, value):
    resp = await client.post(
        "/api/v1/jobs/teams", params={"dry_run": value}, data=sheet(team_rows(2)), headers={"Content-Type": "text/csv"}
    )
    body = await resp.json(content_type=None)
    assert resp.status == 400, body
    assert body["parameter"] == "dry_run"
    assert await db.jobs.count_documents({}) == 0


@pytest.mark.parametrize("value", ["maybe", ""])
async def test_the_streamed_export_parses_booleans_the_same_way(client, value):
    resp = await client.post("/api/v1/exports/people.csv", params={"neutralize_formulas": value})
    body = await resp.json(content_type=None)
    assert resp.status == 400 and body["parameter"] == "neutralize_formulas"


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", "Yes"])
async def test_the_accepted_spellings_of_true_all_mean_a_dry_run(client, db, value):
    resp = await client.post(
        "/api/v1/jobs/teams", params={"dry_run": value}, data=sheet(team_rows(2)), headers={"Content-Type": "text/csv"}
    )
    assert resp.status == 200 and (await resp.json())["dry_run"] is True
    assert await db.jobs.count_documents({}) == 0


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/jobs", {"limit": ""}),
        ("/api/v1/jobs", [("limit", "5"), ("limit", "6")]),
        ("/api/v1/jobs", {"state": "runing"}),
        # Found by schemathesis: an empty filter was read as no filter.
        ("/api/v1/jobs", [("state", "queued"), ("kind", "")]),
        ("/api/v1/jobs", {"state": "queued,,running"}),
    ],
)
async def test_an_empty_repeated_or_unknown_value_is_a_400_not_a_guess(client, path, params):
    resp = await client.get(path, params=params)
    body = await resp.json(content_type=None)
    assert resp.status == 400, body
    assert body["parameter"] in ("limit", "state", "kind")


async def test_list_parameters_may_be_repeated(client):
    resp = await client.get("/api/v1/jobs", params=[("state", "running"), ("state", "paused,queued")])
    assert resp.status == 200
    assert (await resp.json())["jobs"] == []


async def test_a_header_with_a_stray_carriage_return_is_a_400_not_a_500(client, db):
    resp = await client.post(
        "/api/v1/jobs/teams",
        params={"dry_run": "true"},
        data=b"N;B\x17S\xc3\xb3\r!S\xc2\x83",
        headers={"Content-Type": "text/plain"},
    )
    body = await resp.json(content_type=None)
    assert resp.status == 400 and body["type"] == "urn:problem:collect-jobs:invalid-csv", body


async def test_a_multipart_part_with_a_malformed_header_is_a_400(client, db):
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="\x02"\r\n\r\n{{}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n\r\n--{boundary}--\r\n'
    ).encode()
    resp = await client.post(
        "/api/v1/jobs/import",
        params={"dataset": "x"},
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status == 400, await resp.text()
    assert await db.jobs.count_documents({}) == 0
