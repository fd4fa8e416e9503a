"""The application factory: settings in, a web.Application out."""
from __future__ import annotations

import csv
from collections.abc import Iterable

from aiohttp import web
from pymongo.monitoring import CommandListener

from .api import console, events, exports, health, imports, jobs, metrics, teams
from .jobs.manager import begin_shutdown, manager_ctx
from .middlewares import problem_middleware
from .metrics import Metrics, queue_sampler_ctx
from .retention import retention_ctx
from .settings import Settings
from .store.db import database_ctx
from .typedefs import DB_LISTENERS_KEY, METRICS_KEY, SETTINGS_KEY


def create_app(settings: Settings, command_listeners: Iterable[CommandListener] = ()) -> web.Application:
    """``command_listeners`` are PyMongo listeners the app's database client is
    created with, besides the metrics' own (the test suite checks indexes with one)."""
    # csv's field limit is process-wide; the service is the only csv user here.
    csv.field_size_limit(settings.max_field_size)
    app = web.Application(middlewares=[problem_middleware])
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = app_metrics = Metrics()
    app_metrics.watch(app)
    app[DB_LISTENERS_KEY] = [app_metrics.command_listener, *command_listeners]
    # Opened in order, closed in reverse: the manager stops before the database closes.
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(manager_ctx)
    app.cleanup_ctx.append(events.events_ctx)
    app.cleanup_ctx.append(queue_sampler_ctx)
    app.cleanup_ctx.append(retention_ctx)
    app.on_shutdown.append(begin_shutdown)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics.metrics)
    app.router.add_post("/api/v1/jobs/import", imports.create_import)
    app.router.add_post("/api/v1/jobs/teams", teams.create_teams)
    app.router.add_post("/api/v1/jobs/export", exports.create_export)
    app.router.add_get("/api/v1/exports/{dataset}.csv", exports.stream_export)
    app.router.add_get("/api/v1/jobs/{job_id}/result", exports.export_result)
    app.router.add_get("/api/v1/jobs/{job_id}/events", events.job_events)
    app.router.add_get("/api/v1/jobs", jobs.list_jobs)
    app.router.add_get("/api/v1/jobs/{job_id}", jobs.get_job)
    app.router.add_delete("/api/v1/jobs/{job_id}", jobs.delete_job)
    app.router.add_post("/api/v1/jobs/{job_id}/{action}", jobs.control_job)
    app.router.add_routes(console.routes(console.load_console()))
    return app
