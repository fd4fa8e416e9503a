"""GET /metrics: Prometheus text exposition of this replica's jobs. Cheap by
design (no database query), so scraping never loads the database."""
from __future__ import annotations

import time
from collections import Counter

from aiohttp import web

from ..typedefs import MANAGER_KEY

STARTED = time.time()


async def metrics(request: web.Request) -> web.Response:
    manager = request.app[MANAGER_KEY]
    running = Counter((r.kind.name, "paused" if not r.gate.is_set() else "running") for r in manager.runners.values())
    lines = [
        "# HELP collect_jobs_runners Jobs this replica is running, by kind and whether paused.",
        "# TYPE collect_jobs_runners gauge",
    ]
    for kind in sorted(manager.kinds):
        for state in ("running", "paused"):
            lines.append(f'collect_jobs_runners{{kind="{kind}",state="{state}"}} {running[(kind, state)]}')
    lines += [
        "# HELP collect_jobs_finished_total Jobs this replica finished since it started, by kind and outcome.",
        "# TYPE collect_jobs_finished_total counter",
    ]
    for (kind, outcome), count in sorted(manager.finished.items()):
        lines.append(f'collect_jobs_finished_total{{kind="{kind}",outcome="{outcome}"}} {count}')
    lines += [
        "# HELP collect_jobs_rollback_failures_total Rollback attempts that failed on this replica, by kind.",
        "# TYPE collect_jobs_rollback_failures_total counter",
    ]
    for kind in sorted(manager.kinds):
        lines.append(f'collect_jobs_rollback_failures_total{{kind="{kind}"}} {manager.rollback_failures[kind]}')
    lines += [
        "# HELP collect_jobs_accepting Whether this replica admits new work (0 while shutting down).",
        "# TYPE collect_jobs_accepting gauge",
        f"collect_jobs_accepting {int(manager.accepting)}",
        "# HELP collect_jobs_start_time_seconds When this replica started.",
        "# TYPE collect_jobs_start_time_seconds gauge",
        f"collect_jobs_start_time_seconds {STARTED:.3f}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
