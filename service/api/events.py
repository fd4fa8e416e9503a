"""GET /jobs/{id}/events (server-sent events), with every subscriber of a job on
this replica sharing one poll of the database.

A dashboard may keep a live view open on every job, and a job may have hundreds
of viewers: the EventHub keeps one poll per watched job, at the shortest
interval any of its subscribers asked for, and hands each new version of the
job to all of them. So a job costs one read per interval on each replica that
has viewers, whatever their number. Open streams are capped per org
(MAX_EVENT_STREAMS_PER_ORG; over it, 429 with Retry-After)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ..background import end_if_cancelled, stop
from ..errors import JobNotFound, TooManyRequests
from ..jobs.model import FINAL, JobState, job_json
from ..typedefs import EVENTS_KEY, MANAGER_KEY, SETTINGS_KEY
from .common import int_param, org_of, query_params

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 15.0
DISCONNECT_POLL_SECONDS = 0.5
RETRY_AFTER_SECONDS = 5
ENDED = frozenset({*(s.value for s in FINAL), JobState.FAILED.value})

Fetch = Callable[[str, str], Awaitable[dict[str, Any]]]


class _Poll:
    """One watched job: its latest JSON, a version that grows with each change,
    and the task that reads it for everyone."""

    def __init__(self, hub: EventHub, key: tuple[str, str], doc: dict[str, Any]) -> None:
        self.hub = hub
        self.key = key
        self.body = job_json(doc)
        self.version = 1
        self.gone = False  # deleted while watched
        self.intervals: Counter[float] = Counter()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        return self.gone or self.body["state"] in ENDED

    async def changed_since(self, version: int, timeout: float) -> bool:  # noqa: ASYNC109 (a wait bound, not a call timeout)
        """Waits up to ``timeout`` for a version after ``version``."""
        if self.version > version or self.ended:
            return True
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True

    def _publish(self) -> None:
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def run(self) -> None:
        org_id, job_id = self.key
        while not self.ended:
            await asyncio.sleep(min(self.intervals))
            try:
                doc = await self.hub.fetch(org_id, job_id)
            except JobNotFound:
                self.gone = True
                self._publish()
                return
            except Exception as exc:  # an outage: keep the last version, try again
                log.warning("event poll of job %s failed: %s", job_id, exc)
                continue
            finally:
                end_if_cancelled()  # PyMongo may have swallowed it (service/background.py)
            body = job_json(doc)
            if body != self.body:
                self.body = body
                self._publish()


class EventHub:
    """The per-replica registry of watched jobs (see the module docstring)."""

    def __init__(self, fetch: Fetch, max_per_org: int) -> None:
        self.fetch = fetch
        self.max_per_org = max_per_org
        self.per_org: Counter[str] = Counter()
        self._polls: dict[tuple[str, str], _Poll] = {}

    @property
    def subscribers(self) -> int:
        return sum(self.per_org.values())

    @property
    def polled_jobs(self) -> int:
        return sum(1 for p in self._polls.values() if p.task is not None and not p.task.done())

    @contextlib.asynccontextmanager
    async def subscribe(self, org_id: str, job_id: str, interval: float) -> AsyncIterator[_Poll]:
        """Joins (or starts) the job's poll; 404 for an unknown or foreign job,
        429 once the org has MAX_EVENT_STREAMS_PER_ORG streams open here."""
        if self.per_org[org_id] >= self.max_per_org:
            raise TooManyRequests(
                f"Your organisation has {self.per_org[org_id]} event streams open on this server, "
                f"the most allowed (MAX_EVENT_STREAMS_PER_ORG); close some or retry later.",
                retry_after=RETRY_AFTER_SECONDS,
            )
        key = (org_id, job_id)
        self.per_org[org_id] += 1
        try:
            poll = self._polls.get(key)
            if poll is None:
                doc = await self.fetch(org_id, job_id)  # a 404 before the stream starts
                poll = self._polls.get(key)  # another subscriber may have started it meanwhile
                if poll is None:
                    poll = self._polls[key] = _Poll(self, key, doc)
            poll.intervals[interval] += 1
            if poll.task is None or poll.task.done():
                poll.task = asyncio.create_task(poll.run(), name=f"events-{job_id}")
            try:
                yield poll
            finally:
                poll.intervals[interval] -= 1
                if poll.intervals[interval] <= 0:
                    del poll.intervals[interval]
                if not poll.intervals:
                    self._polls.pop(key, None)
                    if poll.task is not None:
                        poll.task.cancel()
        finally:
            self.per_org[org_id] -= 1
            if self.per_org[org_id] <= 0:
                del self.per_org[org_id]

    async def close(self) -> None:
        await asyncio.gather(*(stop(p.task) for p in self._polls.values() if p.task is not None))


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx, after the job manager's (the hub reads jobs through its repo)."""
    repo = app[MANAGER_KEY].repo
    app[EVENTS_KEY] = hub = EventHub(repo.get, app[SETTINGS_KEY].max_event_streams_per_org)
    yield
    await hub.close()


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``event: job`` with the job's JSON whenever it changes
    (checked every ``interval_ms``, default 500), then ``event: end`` once the
    job is completed, terminated or failed. A comment line every 15 s keeps
    proxies from closing a quiet stream (a paused job)."""
    org_id, job_id = org_of(request), request.match_info["job_id"]
    interval = int_param(query_params(request, ("interval_ms",)), "interval_ms", 500, 50, 60_000) / 1000
    async with request.app[EVENTS_KEY].subscribe(org_id, job_id, interval) as poll:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        sent, version, quiet_since = 0, 0, time.monotonic()
        while True:
            if poll.version > version:
                version = poll.version
                sent += 1
                await response.write(f"id: {sent}\nevent: job\ndata: {json.dumps(poll.body, default=str)}\n\n".encode())
                quiet_since = time.monotonic()
            if poll.ended:
                state = "deleted" if poll.gone else poll.body["state"]
                await response.write(f"event: end\ndata: {json.dumps({'state': state})}\n\n".encode())
                break
            if await poll.changed_since(version, DISCONNECT_POLL_SECONDS):
                continue
            # aiohttp does not cancel a handler whose client left, and a quiet
            # stream writes nothing that would fail: look at the connection.
            transport = request.transport
            if transport is None or transport.is_closing():
                return response
            if time.monotonic() - quiet_since >= KEEP_ALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
        await response.write_eof()
        return response
