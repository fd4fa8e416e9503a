"""The application factory: settings in, a web.Application out."""

from __future__ import annotations

import csv
from collections.abc import Iterable

from aiohttp import web
from pymongo.monitoring import CommandListener

from .api import (
    access,
    audit,
    bulk,
    console,
    datasets,
    downloads,
    events,
    exports,
    health,
    imports,
    jobs,
    metrics,
    openapi,
    teams,
)
from .auth.middleware import auth_ctx, identity_middleware
from .jobs.manager import begin_shutdown, manager_ctx
from .jobs.model import ACTIONS
from .jobs.states import BULK_ACTIONS
from .metrics import Metrics, queue_sampler_ctx
from .middlewares import body_middleware, problem_middleware, security_headers
from .retention import retention_ctx
from .settings import Settings
from .store.db import database_ctx
from .typedefs import DB_LISTENERS_KEY, METRICS_KEY, SETTINGS_KEY

# Job ids are ObjectIds: matching only those keeps /jobs/import from also
# being "the job named import", so a 405's Allow header lists exactly the
# methods of the path (as the OpenAPI document and its fuzzing expect).
JOB = "/api/v1/jobs/{job_id:[0-9a-f]{24}}"
JOB_ACTION = JOB + "/{action:" + "|".join(ACTIONS) + "}"


def create_app(settings: Settings, command_listeners: Iterable[CommandListener] = ()) -> web.Application:
    """``command_listeners`` are PyMongo listeners the app's database client is
    created with, besides the metrics' own (the test suite checks indexes with one)."""
    # csv's field limit is process-wide; the service is the only csv user here.
    csv.field_size_limit(settings.max_field_size)
    app = web.Application(middlewares=[problem_middleware, identity_middleware, body_middleware])
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = app_metrics = Metrics()
    app_metrics.watch(app)
    app[DB_LISTENERS_KEY] = [app_metrics.command_listener, *command_listeners]
    # Opened in order, closed in reverse: the manager stops before the database closes.
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(auth_ctx)
    app.cleanup_ctx.append(manager_ctx)
    app.cleanup_ctx.append(events.events_ctx)
    app.cleanup_ctx.append(queue_sampler_ctx)
    app.cleanup_ctx.append(retention_ctx)
    app.on_shutdown.append(begin_shutdown)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics.metrics)
    app.router.add_post("/api/v1/jobs/import", imports.create_import)
    app.router.add_post("/api/v1/jobs/teams", teams.create_teams)
    app.router.add_post("/api/v1/jobs/export", exports.create_export)
    # Streamed exports start from a POST; a browser redeems a ticket (no HEAD:
    # a HEAD would use the ticket up).
    app.router.add_post("/api/v1/exports/{dataset}.csv", exports.post_stream_export)
    app.router.add_post("/api/v1/downloads", downloads.create_download)
    app.router.add_get("/api/v1/downloads/{ticket}", downloads.download, allow_head=False)
    app.router.add_get(JOB + "/result", exports.export_result)
    app.router.add_get(JOB + "/events", events.job_events)
    app.router.add_get("/api/v1/jobs", jobs.list_jobs)
    app.router.add_get(JOB, jobs.get_job)
    app.router.add_delete(JOB, jobs.delete_job)
    app.router.add_post(JOB_ACTION, jobs.control_job)
    app.router.add_post(JOB + "/undo", jobs.undo_job)
    app.router.add_post("/api/v1/jobs/{action:" + "|".join(BULK_ACTIONS) + "}", bulk.bulk_control)
    app.router.add_get("/api/v1/openapi.json", openapi.openapi_json)
    app.router.add_get(openapi.DOCS_ROUTE, openapi.docs_page)
    app.router.add_get(openapi.DOCS_ROUTE + "/{name}", openapi.docs_asset)
    app.router.add_get("/api/v1/datasets/{dataset}", datasets.get_dataset)
    app.router.add_get("/api/v1/me", access.me)
    app.router.add_post("/api/v1/api-keys", access.create_key)
    app.router.add_get("/api/v1/api-keys", access.list_keys)
    app.router.add_delete("/api/v1/api-keys/{key_id}", access.revoke_key)
    app.router.add_get("/api/v1/audit", audit.list_events)
    app.router.add_routes(console.routes(console.load_console()))
    return app
