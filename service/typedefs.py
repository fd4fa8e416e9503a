"""Typed keys for everything shared on the web.Application (no module singletons)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .auth.middleware import Authenticator
    from .jobs.manager import JobManager
    from .settings import Settings
    from .store.db import Database

SETTINGS_KEY: web.AppKey["Settings"] = web.AppKey("settings")
DB_KEY: web.AppKey["Database"] = web.AppKey("db")
MANAGER_KEY: web.AppKey["JobManager"] = web.AppKey("manager")
AUTH_KEY: web.AppKey["Authenticator"] = web.AppKey("auth")
