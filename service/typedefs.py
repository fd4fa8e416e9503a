"""Typed keys for everything shared on the web.Application (no module singletons)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pymongo.monitoring import CommandListener

if TYPE_CHECKING:
    from .api.events import EventHub
    from .auth.middleware import Authenticator
    from .jobs.manager import JobManager
    from .metrics import Metrics
    from .settings import Settings
    from .store.db import Database

SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
DB_KEY: web.AppKey[Database] = web.AppKey("db")
MANAGER_KEY: web.AppKey[JobManager] = web.AppKey("manager")
METRICS_KEY: web.AppKey[Metrics] = web.AppKey("metrics")
EVENTS_KEY: web.AppKey[EventHub] = web.AppKey("events")
# PyMongo command listeners the database client is created with (the metrics';
# the test suite adds the one that checks every query has an index).
DB_LISTENERS_KEY: web.AppKey[list[CommandListener]] = web.AppKey("db_listeners")
AUTH_KEY: web.AppKey[Authenticator] = web.AppKey("auth")
