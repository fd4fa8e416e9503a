"""Prometheus metrics through prometheus_client, in a CollectorRegistry owned by
the app (no module-level registry, so two apps in one process never mix).

Counters and histograms are fed by one-line hooks in the job engine (a job's
progress, its end, a rollback, an adoption) and by a PyMongo command listener
(every database operation's latency and errors). Gauges of what this replica
holds (runners, streams, event subscribers) are read at scrape time. The queue
is sampled by a background task every few JOB_POLL_SECONDS with two indexed
queries, so a scrape never touches the database. No metric has a job_id label:
its cardinality would grow without bound."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pymongo import monitoring

from .background import repeat, stop
from .jobs.model import JobState, utcnow
from .typedefs import EVENTS_KEY, MANAGER_KEY, METRICS_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)

QUEUE_SAMPLE_TICKS = 5  # the queue is sampled every 5 manager ticks (JOB_POLL_SECONDS)
# Progress keys that count rows a rollback removed or restored, by kind.
ROLLBACK_KEYS = ("rolled_back", "users_restored", "users_deleted", "teams_deleted")
JOB_SECONDS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
DB_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.rows = Counter(
            "collect_jobs_rows_processed", "Rows jobs processed on this replica, by kind.", ["kind"], registry=registry
        )
        self.rows_failed = Counter(
            "collect_jobs_rows_failed", "Rows that became row errors on this replica, by kind.", ["kind"], registry=registry
        )
        self.jobs = Histogram(
            "collect_jobs_job_duration_seconds",
            "Jobs this replica finished, by kind and outcome: seconds from the job's start to its end.",
            ["kind", "outcome"],
            buckets=JOB_SECONDS,
            registry=registry,
        )
        self.rollback_rows = Counter(
            "collect_jobs_rollback_rows",
            "Rows (records, users, teams) rollbacks removed or restored.",
            ["kind"],
            registry=registry,
        )
        self.rollbacks = Histogram(
            "collect_jobs_rollback_duration_seconds",
            "Rollbacks this replica finished, by kind: seconds it spent rolling back.",
            ["kind"],
            buckets=JOB_SECONDS,
            registry=registry,
        )
        self.rollback_failures = Counter(
            "collect_jobs_rollback_failures",
            "Rollback attempts that failed on this replica (they back off and retry), by kind.",
            ["kind"],
            registry=registry,
        )
        self.adoptions = Counter(
            "collect_jobs_lease_adoptions",
            "Jobs this replica adopted after their owner's lease expired.",
            ["kind"],
            registry=registry,
        )
        self.queue_depth = Gauge("collect_jobs_queue_depth", "Queued jobs of every org (sampled).", registry=registry)
        self.queue_oldest = Gauge(
            "collect_jobs_queue_oldest_age_seconds", "Age of the oldest queued job, 0 when none (sampled).", registry=registry
        )
        self.db_seconds = Histogram(
            "collect_jobs_db_operation_seconds",
            "Database commands this replica sent, by command, as the driver timed them.",
            ["command"],
            buckets=DB_SECONDS,
            registry=registry,
        )
        self.db_errors = Counter(
            "collect_jobs_db_operation_errors", "Database commands that failed, by command.", ["command"], registry=registry
        )
        self.command_listener = DbListener(self)
        self._seen: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
        self._rollback_started: weakref.WeakKeyDictionary[Any, tuple[float, int]] = weakref.WeakKeyDictionary()

    def watch(self, app: web.Application) -> None:
        """Gauges of what this replica holds, read when scraped."""
        self.registry.register(_Holdings(app))

    # -- hooks in the job engine ------------------------------------------------

    def progress(self, ctx: Any) -> None:
        """At each checkpoint: counts the rows processed and failed since the last
        one (an adopted job's earlier rows were counted where they ran)."""
        seen = self._seen.get(ctx)
        if seen is None:
            seen = self._seen[ctx] = {k: (ctx.job.get("progress") or {}).get(k, 0) for k in ("processed", "failed")}
        progress, kind = ctx.progress, ctx.job["kind"]
        for key, counter in (("processed", self.rows), ("failed", self.rows_failed)):
            now, before = progress.get(key, 0), seen.get(key, 0)
            if now > before:
                counter.labels(kind).inc(now - before)
            seen[key] = now

    def rollback_started(self, ctx: Any) -> None:
        self._rollback_started[ctx] = (time.monotonic(), _rollback_rows(ctx.progress))

    def job_finished(self, kind: str, outcome: str, ctx: Any) -> None:
        started = ctx.job.get("started_at")
        if started is not None:
            self.jobs.labels(kind, outcome).observe(max(0.0, (utcnow() - started).total_seconds()))
        if outcome in (JobState.TERMINATED.value, JobState.UNDONE.value) and ctx in self._rollback_started:
            since, before = self._rollback_started.pop(ctx)
            self.rollbacks.labels(kind).observe(time.monotonic() - since)
            self.rollback_rows.labels(kind).inc(max(0, _rollback_rows(ctx.progress) - before))

    def rollback_failed(self, kind: str) -> None:
        self.rollback_failures.labels(kind).inc()

    def adopted(self, kind: str) -> None:
        self.adoptions.labels(kind).inc()

    async def sample_queue(self, repo: Any) -> None:
        depth, oldest = await repo.queue_depth()
        self.queue_depth.set(depth)
        self.queue_oldest.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)


def _rollback_rows(progress: dict[str, Any]) -> int:
    return sum(progress.get(key, 0) for key in ROLLBACK_KEYS)


class DbListener(monitoring.CommandListener):
    """Latency and errors of every command the app's client sends."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.metrics.db_seconds.labels(event.command_name).observe(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.metrics.db_seconds.labels(event.command_name).observe(event.duration_micros / 1e6)
        self.metrics.db_errors.labels(event.command_name).inc()


class _Holdings(Collector):
    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        manager = self.app.get(MANAGER_KEY)
        hub = self.app.get(EVENTS_KEY)
        runners = GaugeMetricFamily(
            "collect_jobs_runners", "Jobs this replica is running, by kind and whether paused.", labels=["kind", "state"]
        )
        streams = GaugeMetricFamily(
            "collect_jobs_open_streams", "Streamed downloads open on this replica, by kind.", labels=["kind"]
        )
        if manager is not None:
            counts: dict[tuple[str, str], int] = {(k, s): 0 for k in sorted(manager.kinds) for s in ("running", "paused")}
            attached = 0
            for runner in list(manager.runners.values()):
                key = (runner.kind.name, "running" if runner.gate.is_set() else "paused")
                counts[key] = counts.get(key, 0) + 1
                attached += runner.sink is not None
            for (kind, state), count in counts.items():
                runners.add_metric([kind, state], count)
            streams.add_metric(["export"], attached)
            yield GaugeMetricFamily(
                "collect_jobs_accepting",
                "Whether this replica admits new work (0 while shutting down).",
                value=int(manager.accepting),
            )
        yield runners
        yield streams
        yield GaugeMetricFamily(
            "collect_jobs_event_subscribers",
            "Server-sent-event subscribers connected to this replica.",
            value=hub.subscribers if hub is not None else 0,
        )
        yield GaugeMetricFamily(
            "collect_jobs_event_polls",
            "Jobs whose events this replica polls for its subscribers (one read per interval each).",
            value=hub.polled_jobs if hub is not None else 0,
        )


async def queue_sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx, after the database's: samples the queue in the background."""
    metrics, repo = app[METRICS_KEY], app[MANAGER_KEY].repo
    interval = QUEUE_SAMPLE_TICKS * app[SETTINGS_KEY].job_poll_seconds

    def failed(exc: Exception) -> None:  # an outage: keep the last values
        log.debug("queue sample failed: %s", exc)

    task = asyncio.create_task(repeat(lambda: metrics.sample_queue(repo), interval, failed), name="metrics-queue-sampler")
    yield
    await stop(task)
