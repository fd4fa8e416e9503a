"""Executes a plan against a cluster and records what the API showed.

Three loops run side by side: the schedule (work and control requests, each
request a task of its own so a stalled replica delays nothing else), the
nemesis (one fault at a time, in the plan's order), and an observer that
lists every org's jobs from a replica that is up every half second and
records each state change with its time. Every HTTP response is kept
(time, replica, status) for the 5xx check.

"Shown paused" is checked while the run goes: when the observer first sees a
job paused, the job's writes are counted straight from the database (rows,
teams, users, undo entries, file chunks, progress); before the run next
sends that job a request (or at the end), they are counted again. Any
difference is a write that landed after the API said paused."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bson import ObjectId
from pymongo import AsyncMongoClient

from .cluster import Cluster
from .inputs import TYPES, ImportInput, TeamsInput, import_csv, teams_sheet
from .plan import Event, Plan

FINAL = frozenset({"completed", "terminated"})
NEXT = {"queued": "pause", "running": "pause", "pausing": "resume", "paused": "resume", "failed": "retry"}
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=8)
CREATE_FOR = 90.0  # how long a creation is retried (same Idempotency-Key)


@dataclass
class Response:
    t: float
    replica: str
    method: str
    path: str
    status: int | None  # None: no answer (refused, timed out, broken)
    error: str = ""


@dataclass
class Job:
    work: int  # index of the event that created it; -1 for a job found only in the database
    kind: str
    org: str
    args: dict[str, Any]
    input: ImportInput | TeamsInput | None = None
    id: str | None = None
    create: str = "pending"  # pending | created | refused: <status> | gave up
    seen: list[tuple[float, str, dict]] = field(default_factory=list)  # (time, state, progress)
    paused_at: float | None = None  # when the observer last saw it turn paused
    paused_snapshot: dict | None = None
    stream: dict[str, Any] = field(default_factory=dict)  # streamed export: what the client got
    owner: str | None = None  # as last seen
    refusal: Any = None  # the problem document of a refused creation
    controls: list[tuple[float, str, str, int | None, str | None]] = field(default_factory=list)

    @property
    def state(self) -> str | None:
        return self.seen[-1][1] if self.seen else None


@dataclass
class Violation:
    invariant: str
    job: str | None
    detail: str
    documents: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        docs = "".join(f"\n      {d!r}"[:1200] for d in self.documents[:5])
        return f"[{self.invariant}] job {self.job}: {self.detail}{docs}"


class Driver:
    def __init__(self, plan: Plan, cluster: Cluster, log=print) -> None:
        self.plan = plan
        self.cluster = cluster
        self.log = log
        self.rng = random.Random(plan.seed ^ 0x5EED)  # replica choice for retries: not part of the schedule
        self.jobs: dict[int, Job] = {}
        self.by_id: dict[str, Job] = {}
        self.responses: list[Response] = []
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {}
        self.t0 = 0.0
        self.tasks: set[asyncio.Task] = set()
        self.http: aiohttp.ClientSession | None = None
        self.mongo: AsyncMongoClient | None = None

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def now(self) -> float:
        return time.time() - self.t0

    # -- HTTP ----------------------------------------------------------------

    async def call(self, replica: str, method: str, path: str, org: str, timeout=REQUEST_TIMEOUT, **kw) -> tuple[int | None, Any]:
        assert self.http is not None
        proc = self.cluster.replicas[replica]
        headers = {**self.cluster.headers(org), **kw.pop("headers", {})}
        try:
            async with self.http.request(method, f"{proc.url}{path}", headers=headers, timeout=timeout, **kw) as resp:
                body = await resp.json(content_type=None) if resp.content_type.endswith("json") else await resp.read()
                self.responses.append(
                    Response(time.time(), replica, method, path, resp.status, str(body)[:300] if resp.status >= 500 else "")
                )
                return resp.status, body
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self.responses.append(Response(time.time(), replica, method, path, None, type(exc).__name__))
            return None, None

    def any_up(self) -> str:
        up = self.cluster.up()
        return self.rng.choice(up) if up else self.rng.choice(list(self.cluster.replicas))

    # -- the run -------------------------------------------------------------

    async def run(self, http: aiohttp.ClientSession) -> None:
        """The plan, then the settle phase; ``http`` stays open for the checks."""
        self.t0 = time.time()
        self.http = http
        self.mongo = AsyncMongoClient(self.cluster.uri, serverSelectionTimeoutMS=3000, timeoutMS=10000)
        observer = asyncio.create_task(self.observe())
        nemesis = asyncio.create_task(self.nemesis())
        try:
            await self.schedule()
            await nemesis
        finally:
            observer.cancel()
            await asyncio.gather(observer, return_exceptions=True)
        await self.settle()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def at(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def schedule(self) -> None:
        for event in self.plan.events:
            if event.what == "fault":
                continue
            await self.at(event.t)
            if event.what == "control":
                self.spawn(self.control_event(event))
            else:
                job = Job(event.args["work"], event.what, event.args["org"], event.args)
                self.jobs[job.work] = job
                self.count(f"work.{event.what}")
                self.spawn(self.create(job, event))
        await self.at(self.plan.duration)

    async def nemesis(self) -> None:
        lanes: dict[int, list[Event]] = defaultdict(list)
        for event in self.plan.events:
            if event.what == "fault":
                lanes[event.args.get("lane", 0)].append(event)
        await asyncio.gather(*(self.lane(events) for events in lanes.values()))

    async def lane(self, events: list[Event]) -> None:
        """One lane's faults, one at a time in the plan's order."""
        for event in events:
            await self.at(event.t)
            if self.now() > self.plan.duration:
                break
            kind, args = event.args["kind"], dict(event.args)
            if args.get("replica") == "owner":
                args["replica"] = self.newest_owner() or args["fallback"]
            started = self.now()
            try:
                injected = await self.cluster.fault(kind, args)
            except Exception as exc:  # a replica that did not come back: the run goes on without it
                self.violations.append(
                    Violation("replica-restart", None, f"{kind} on {args.get('replica', 'the database')}: {exc}", [args])
                )
                self.log(f"{started:7.2f}s fault {kind} {args} could not be undone: {exc}")
                continue
            if injected:
                self.log(f"{started:7.2f}s fault {kind} {args}")
                self.count(f"fault.{kind}")
            else:
                self.count("fault.skipped (target already down)")

    def newest_owner(self) -> str | None:
        live = [j for j in self.jobs.values() if j.owner in self.cluster.replicas and j.state not in FINAL]
        return max(live, key=lambda j: j.work).owner if live else None

    # -- work ----------------------------------------------------------------

    async def create(self, job: Job, event: Event) -> None:
        args = event.args
        if job.kind == "stream":
            await self.stream(job, args)
            return
        if job.kind == "import":
            job.input = import_csv(args["input"], args["dataset"], args["rows"], args["bad"])
            path = "/api/v1/jobs/import"
            kw = {
                "params": {
                    "dataset": args["dataset"],
                    "types": TYPES,
                    "batch_size": str(args["batch_size"]),
                    "on_error": "skip",
                    "max_errors": "100000",
                }
            }
        elif job.kind == "teams":
            job.input = teams_sheet(args["input"], args["rows"])
            path = "/api/v1/jobs/teams"
            kw = {"params": {"batch_size": str(args["batch_size"])}}
        else:
            path, kw = "/api/v1/jobs/export", {"json": {"dataset": args["dataset"], "batch_size": args["batch_size"]}}
        key = f"chaos-{self.plan.seed}-{job.work}-{self.cluster.name}"
        replica = args["replica"]
        deadline = time.monotonic() + CREATE_FOR
        while True:
            extra = dict(kw)
            if job.input is not None:
                extra["data"] = job.input.body
                extra["headers"] = {"Content-Type": "text/csv", "Idempotency-Key": key}
            else:
                extra["headers"] = {"Idempotency-Key": key}
            status, body = await self.call(replica, "POST", path, job.org, timeout=aiohttp.ClientTimeout(total=20), **extra)
            if status in (200, 201, 202):
                self.created(job, body)
                return
            if status is not None and status not in (409, 429, 503) and status < 500:
                job.create = f"refused {status}"
                job.refusal = body
                return
            if time.monotonic() > deadline:
                job.create = f"gave up: last {status}"
                return
            await asyncio.sleep(1)
            replica = self.any_up()

    def created(self, job: Job, body: dict) -> None:
        job.id = body["id"]
        job.create = "created"
        self.by_id[job.id] = job
        self.note(job, body["state"], body.get("progress") or {}, time.time())

    async def stream(self, job: Job, args: dict) -> None:
        """A streamed export, read as the plan's client does: all of it, or
        stalling after some bytes, or leaving after some bytes."""
        assert self.http is not None
        proc = self.cluster.replicas[args["replica"]]
        url = f"{proc.url}/api/v1/exports/{args['dataset']}.csv"
        got = bytearray()
        outcome = "?"
        try:
            async with self.http.post(
                url,
                params={"batch_size": str(args["batch_size"])},
                headers=self.cluster.headers(job.org),
                timeout=aiohttp.ClientTimeout(total=self.plan.duration + 120, sock_read=60),
            ) as resp:
                self.responses.append(
                    Response(time.time(), args["replica"], "POST", "/api/v1/exports/{dataset}.csv", resp.status)
                )
                if resp.status != 200:
                    job.create = f"refused {resp.status}"
                    return
                job.id = resp.headers["X-Job-Id"]
                job.create = "created"
                self.by_id[job.id] = job
                while len(got) < args["after_bytes"]:
                    chunk = await resp.content.read(65536)
                    if not chunk:
                        break
                    got += chunk
                if args["client"] == "disconnect" and not resp.content.at_eof():
                    outcome = "left"
                    resp.close()
                    return
                if args["client"] == "stall":
                    await asyncio.sleep(args["stall"])
                while chunk := await resp.content.read(65536):
                    got += chunk
                outcome = "eof"
        except aiohttp.ClientPayloadError:
            outcome = "broken"
        except (TimeoutError, aiohttp.ClientError) as exc:
            outcome = f"error {type(exc).__name__}"
            if job.id is None:
                self.responses.append(
                    Response(time.time(), args["replica"], "POST", "/api/v1/exports/{dataset}.csv", None, outcome)
                )
                job.create = f"gave up: {outcome}"
        finally:
            job.stream = {"outcome": outcome, "body": bytes(got)}

    # -- control -------------------------------------------------------------

    async def control_event(self, event: Event) -> None:
        job = self.jobs.get(event.args["work"])
        action = event.args["action"]
        self.count(f"control.{action}")
        if job is None or job.id is None:
            self.count("control.no_job_yet")
            return
        if action == "next":
            if job.state in FINAL:  # move on a job that can still move, the newest one
                live = [j for j in self.jobs.values() if j.id and j.state not in FINAL and j.work <= job.work]
                if not live:
                    self.count("control.next_none")
                    return
                job = max(live, key=lambda j: j.work)
            action = NEXT.get(job.state or "", "terminate")
        await self.control(job, action, event.args["replica"])

    async def control(self, job: Job, action: str, replica: str) -> tuple[int | None, Any]:
        assert job.id is not None
        await self.check_paused(job, f"before {action}")
        sent = time.time()
        status, body = await self.call(replica, "POST", f"/api/v1/jobs/{job.id}/{action}", job.org)
        state = body.get("state") if isinstance(body, dict) else None
        job.controls.append((sent - self.t0, action, replica, status, state))
        self.count(f"control.{action}.{status}")
        if status == 200 and isinstance(body, dict):
            self.note(job, body["state"], body.get("progress") or {}, time.time())
        return status, body

    # -- observing -----------------------------------------------------------

    async def observe(self) -> None:
        orgs = sorted({e.args["org"] for e in self.plan.work()})
        while True:
            for org in orgs:
                status, body = await self.call(
                    self.any_up(), "GET", "/api/v1/jobs", org, params={"limit": "500"}, timeout=aiohttp.ClientTimeout(total=4)
                )
                if status == 200:
                    received = time.time()
                    for doc in body["jobs"]:
                        job = self.by_id.get(doc["id"])
                        if job is not None:
                            job.owner = doc.get("owner")
                            self.note(job, doc["state"], doc.get("progress") or {}, received)
            await asyncio.sleep(0.5)

    def note(self, job: Job, state: str, progress: dict, at: float) -> None:
        if job.seen and job.seen[-1][1] == state and job.seen[-1][2] == progress:
            return
        turned_paused = state == "paused" and job.state != "paused"
        job.seen.append((at, state, progress))
        if turned_paused and job.paused_snapshot is None:
            job.paused_at = at
            self.spawn(self.take_paused_snapshot(job, at))

    async def take_paused_snapshot(self, job: Job, at: float) -> None:
        snap = await self.writes(job)
        if snap is not None and job.paused_at == at:
            job.paused_snapshot = snap

    async def writes(self, job: Job) -> dict | None:
        """What the job has written so far, counted in the database."""
        assert self.mongo is not None
        db = self.mongo.get_default_database()
        try:
            run = await db["job_progress"].find_one({"_id": job.id}, {"progress": 1})
            snap: dict[str, Any] = {"progress": (run or {}).get("progress")}
            if job.kind == "import":
                snap["records"] = await db["records"].count_documents({"job_id": job.id})
                newest = await db["records"].find_one({"job_id": job.id}, {"created_at": 1}, sort=[("created_at", -1)])
                snap["newest"] = newest["created_at"] if newest else None
            elif job.kind == "teams":
                snap["teams"] = await db["teams"].count_documents({"job_id": job.id})
                snap["users"] = await db["users"].count_documents({"job_id": job.id})
                snap["undo"] = await db["undo_log"].count_documents({"_id": {"$gte": f"{job.id}:", "$lt": f"{job.id};"}})
            elif job.kind == "export" and not job.stream:
                ctl = await db["jobs"].find_one({"_id": job.id}, {"params.file_id": 1})
                file_id = ((ctl or {}).get("params") or {}).get("file_id")
                snap["chunks"] = await db["exports.chunks"].count_documents({"files_id": ObjectId(file_id)}) if file_id else None
            return snap
        except Exception:  # the database away: this snapshot is skipped
            return None

    async def check_paused(self, job: Job, when: str) -> None:
        first, at = job.paused_snapshot, job.paused_at
        job.paused_snapshot = job.paused_at = None
        if first is None or at is None or job.state != "paused":
            return
        second = await self.writes(job)
        if second is None:
            return
        self.count("check.paused_windows")
        newest = second.get("newest")
        late = newest is not None and newest.replace(tzinfo=dt.timezone.utc).timestamp() > at + 0.002
        if {k: v for k, v in first.items() if k != "newest"} != {k: v for k, v in second.items() if k != "newest"} or late:
            docs: list[Any] = [{"shown_paused_at": f"{at - self.t0:.3f}s", "counted_then": first, "counted_now": second}]
            if late and self.mongo is not None:
                when_at = dt.datetime.fromtimestamp(at, dt.timezone.utc)
                docs += (
                    await self.mongo.get_default_database()["records"]
                    .find({"job_id": job.id, "created_at": {"$gt": when_at}}, {"data": 0})
                    .limit(3)
                    .to_list(None)
                )
            self.violations.append(
                Violation("shown-paused-wrote", job.id, f"writes landed after the API showed paused ({when})", docs)
            )

    # -- settling ------------------------------------------------------------

    async def settle(self, bound: float = 45.0, limit: float = 180.0) -> None:
        """Faults stop; every job must reach completed or terminated. Paused jobs
        are resumed, failed ones retried (twice) then terminated. A job whose
        state and progress do not change for ``bound`` seconds is stuck."""
        self.log(f"{self.now():7.2f}s settle: healing")
        await self.cluster.heal()
        healed = time.monotonic()
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=CREATE_FOR)
        assert self.mongo is not None
        db = self.mongo.get_default_database()
        retries: dict[str, int] = {}
        last: dict[str, tuple[Any, float]] = {}
        stuck: set[str] = set()
        while True:
            try:
                controls = {
                    d["_id"]: d async for d in db["jobs"].find({}, {"state": 1, "org_id": 1, "kind": 1, "owner": 1, "epoch": 1})
                }
                progress = {d["_id"]: d async for d in db["job_progress"].find({}, {"progress": 1})}
            except Exception:
                await asyncio.sleep(1)
                continue
            open_jobs = 0
            for job_id, doc in controls.items():
                state = doc["state"]
                job = self.by_id.get(job_id)
                if job is None:  # made by a request whose answer never came back
                    job = Job(
                        -1, "stream" if doc["kind"] == "export" else doc["kind"], doc["org_id"], {}, id=job_id, create="unknown"
                    )
                    self.by_id[job_id] = job
                if state in FINAL or job_id in stuck:
                    continue
                open_jobs += 1
                key = (state, (progress.get(job_id) or {}).get("progress"), doc.get("owner"), doc.get("epoch"))
                seen = last.get(job_id)
                if seen is None or seen[0] != key:
                    last[job_id] = (key, time.monotonic())
                elif time.monotonic() - seen[1] > bound:
                    stuck.add(job_id)
                    self.violations.append(
                        Violation(
                            "stuck",
                            job_id,
                            f"{state} with no progress for {bound:g} s after the faults stopped",
                            [doc, progress.get(job_id)],
                        )
                    )
                    continue
                if state == "paused":
                    await self.control(job, "resume", self.any_up())
                elif state == "failed":
                    n = retries.get(job_id, 0)
                    retries[job_id] = n + 1
                    await self.control(job, "retry" if n < 2 else "terminate", self.any_up())
            if open_jobs == 0:
                break
            if time.monotonic() - healed > limit:
                for job_id, doc in controls.items():
                    if doc["state"] not in FINAL and job_id not in stuck:
                        self.violations.append(
                            Violation("stuck", job_id, f"still {doc['state']} {limit:g} s after the faults stopped", [doc])
                        )
                break
            await asyncio.sleep(1)
        self.settled_after = time.monotonic() - healed
        self.log(f"{self.now():7.2f}s settled in {self.settled_after:.1f} s")
