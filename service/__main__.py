"""python -m service: read the environment, start the server.
python -m service api-keys ...: manage API keys (service/auth/cli.py)."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from . import logs
from .app import create_app
from .jobs.workers import tune_gc
from .settings import ConfigError, Settings


def main() -> int:
    if sys.argv[1:2] == ["api-keys"]:
        from .auth.cli import main as api_keys

        return api_keys(sys.argv[2:])
    try:
        settings = Settings.from_env()
        settings.check_auth()
    except ConfigError as error:
        print(f"collect-jobs: configuration error: {error}", file=sys.stderr)
        return 2
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "text" if sys.stdout.isatty() else "json"
    logs.configure(settings.log_level, fmt)
    # aiohttp owns the signals: SIGTERM/SIGINT run the cleanup contexts, where the
    # job manager checkpoints and releases its jobs within SHUTDOWN_GRACE_SECONDS.
    app = create_app(settings)
    tune_gc()
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        # Open requests (streamed downloads) get a quarter of the grace period;
        # the job manager's hand-over has already started and shares the rest.
        shutdown_timeout=settings.shutdown_grace_seconds / 4,
        access_log=logging.getLogger("aiohttp.access"),
        print=None,
        # Never inflate a request body: a compressed upload is refused (415,
        # service/middlewares.py), and no bomb is inflated before it is.
        auto_decompress=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
