"""How fast a pause and a terminate take effect (issue 22).
Run: .venv/bin/python bench/stop_bench.py [--rows N] [--teams N] [--pauses P] [--seed S]

A real `python -m service` with the default settings (only LOG_LEVEL=WARNING),
on the benchmark's FerretDB, once with the machine as it is ("idle": no load
added by the benchmark) and once with a busy-loop process taking a core
("hog"). For each kind, an import of N rows, a background export of them and
a teams job of T teams (whose managers exist):

- **pause**: the job is paused at a random moment (seeded: a uniform delay
  after it runs again), resumed, paused again, P times (a job that completes
  is replaced by a new one). Measured per pause, from just before the request:
  until the API shows `paused` (polled every POLL s), and until the last write
  landed, as a watcher on its own connection sees it (polled every WATCH s,
  the time of the first read that saw the last change, so an upper bound;
  0 when nothing changed after the request): the job's records (the largest
  `_id` under its prefix), the export's chunks (their count), the teams' and
  marked users' counts. A change seen after `paused` is counted as a
  violation ("wrote while paused").
- **terminate at 50%**: a new job, terminated once its progress reaches half;
  request → `terminated` shown by the API, what the rollback removed and how
  fast, and how long the job took to write what it rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    RESULTS,
    BenchDatabase,
    ServiceProcess,
    data_file,
    done,
    job,
    machine,
    ok,
    start_hog,
    upload,
    wait_job,
    write_results,
)
from pymongo import AsyncMongoClient

from service.store.records import job_prefix, prefix_range
from service.store.teams import user_id
from tests.support.helpers import manager_phone, sheet, team_rows

POLL = 0.01
WATCH = 0.02
# How long after `paused` the watcher keeps looking for a late write.
SETTLE = 0.6
TARGET_MS = 250
UNDO = "undo_log"


class Watcher:
    """Polls ``probe`` on its own connection and keeps when its value changed
    (perf_counter when the read that saw it returned)."""

    def __init__(self, probe: Callable[[], Awaitable[Any]]) -> None:
        self.probe = probe
        self.changes: list[tuple[float, Any]] = []
        self.reads: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        last = object()
        while True:
            sent = time.perf_counter()
            value = await self.probe()
            now = time.perf_counter()
            self.reads.append(now - sent)
            if value != last:
                self.changes.append((now, value))
                last = value
            await asyncio.sleep(WATCH)

    def __enter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def last_change_after(self, t: float) -> float | None:
        after = [at for at, _ in self.changes if at > t]
        return after[-1] if after else None


async def post_action(http, url: str, job_id: str, action: str) -> tuple[int, dict]:
    async with http.post(f"{url}/api/v1/jobs/{job_id}/{action}") as resp:
        return resp.status, await resp.json(content_type=None)


async def until(http, url: str, job_id: str, states: set[str]) -> dict:
    while (current := await job(http, url, job_id))["state"] not in states and not done(current):
        await asyncio.sleep(POLL)
    return current


async def pauses(
    http, url: str, count: int, rng: random.Random, start: Callable[[], Awaitable[str]], watch: Callable[[str], Watcher]
) -> dict:
    """``count`` pauses of jobs ``start`` makes, each at a random moment."""
    paused_ms: list[float] = []
    landed_ms: list[float] = []
    violations = jobs = 0
    job_id = None
    watcher: Watcher | None = None
    try:
        while len(paused_ms) < count:
            if job_id is None:
                job_id = await start()
                jobs += 1
                watcher = watch(job_id).__enter__()
                await wait_job(http, url, job_id, lambda j: done(j) or j["progress"].get("processed", 0) > 0, interval=POLL)
            assert watcher is not None
            await asyncio.sleep(rng.uniform(0.05, 1.0))
            asked = time.perf_counter()
            status, body = await post_action(http, url, job_id, "pause")
            if status == 409:  # it completed in the meantime
                watcher.__exit__(None, None, None)
                job_id = None
                continue
            assert status == 200, body
            current = body if body["state"] == "paused" else await until(http, url, job_id, {"paused"})
            if current["state"] != "paused":
                watcher.__exit__(None, None, None)
                job_id = None
                continue
            shown = time.perf_counter()
            await asyncio.sleep(SETTLE)
            last = watcher.last_change_after(asked)
            paused_ms.append((shown - asked) * 1000)
            landed_ms.append(0.0 if last is None else (last - asked) * 1000)
            # A change seen more than one watch read after `paused` landed after it.
            if last is not None and last > shown + max(watcher.reads[-50:]) + WATCH:
                violations += 1
            status, body = await post_action(http, url, job_id, "resume")
            assert status == 200, body
        if job_id is not None:  # left to finish: the next case starts from a quiet service
            await wait_job(http, url, job_id, done, interval=0.2)
    finally:
        if watcher is not None:
            watcher.__exit__(None, None, None)
    reads = sorted(watcher.reads) if watcher else [0.0]
    return {
        "pauses": len(paused_ms),
        "jobs": jobs,
        "paused_ms": summary(paused_ms),
        "landed_ms": summary(landed_ms),
        "wrote_while_paused": violations,
        "watch_read_p50_ms": round(reads[len(reads) // 2] * 1000, 1),
    }


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        # Nearest rank: of 20 samples, the 19th.
        "p95": round(ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)], 1),
        "max": round(ordered[-1], 1),
        "samples": [round(v, 1) for v in values],
    }


async def terminate_at_half(
    http, url: str, start: Callable[[], Awaitable[str]], total: int, undone: str | None, limit: float
) -> dict:
    """Starts a job, terminates it at half its progress, waits for `terminated`
    for up to ``limit`` s (a rollback still going then is reported with its rate
    so far, and left to the next service: the database is not used again)."""
    began = time.perf_counter()
    job_id = await start()
    running = await wait_job(http, url, job_id, lambda j: j["progress"].get("processed", 0) >= total // 2, interval=POLL)
    asked = time.perf_counter()
    status, body = await post_action(http, url, job_id, "terminate")
    assert status == 200, body
    while (final := await job(http, url, job_id))["state"] != "terminated" and time.perf_counter() - asked < limit:
        assert not done(final), final
        await asyncio.sleep(POLL if time.perf_counter() - asked < 5 else 0.5)
    took = time.perf_counter() - asked
    out = {
        "finished": final["state"] == "terminated",
        "processed": body["progress"].get("processed", running["progress"]["processed"]),
        "seconds": round(took, 2),
        "write_seconds": round(asked - began, 2),
    }
    if undone:
        out["undone"] = final["progress"].get(undone, 0)
        out["per_second"] = round(out["undone"] / took) if took else None
    return out


async def import_case(http, url: str, db, path: Path, rows: int, count: int, rng: random.Random, limit: float) -> dict:
    records = db["records"]
    n = 0

    async def start() -> str:
        nonlocal n
        n += 1
        return (await upload(http, url, path, dataset=f"stop{n}"))["id"]

    def watch(job_id: str) -> Watcher:
        ids = prefix_range(job_prefix("default", f"stop{n}", job_id))

        async def newest() -> Any:
            doc = await records.find_one({"_id": ids}, {"_id": 1}, sort=[("_id", -1)])
            return doc and doc["_id"]

        return Watcher(newest)

    out = {"pause": await pauses(http, url, count, rng, start, watch)}
    out["terminate"] = await terminate_at_half(http, url, start, rows, "rolled_back", limit)
    # A dataset of exactly ``rows`` rows for the export.
    job_id = await start()
    await wait_job(http, url, job_id, done, interval=0.2)
    out["dataset"] = f"stop{n}"
    return out


async def export_case(http, url: str, db, dataset: str, rows: int, count: int, rng: random.Random, limit: float) -> dict:
    chunks = db["exports.chunks"]

    async def start() -> str:
        async with http.post(f"{url}/api/v1/jobs/export", json={"dataset": dataset}) as resp:
            body = await resp.json()
            assert resp.status == 202, body
            return body["id"]

    def watch(job_id: str) -> Watcher:
        # Each attempt's file is "<job>:<epoch>".
        files = {"$gte": f"{job_id}:", "$lt": f"{job_id};"}
        return Watcher(lambda: chunks.count_documents({"files_id": files}))

    return {
        "pause": await pauses(http, url, count, rng, start, watch),
        "terminate": await terminate_at_half(http, url, start, rows, None, limit),
    }


async def teams_case(http, url: str, db, teams: int, count: int, rng: random.Random, limit: float) -> dict:
    body = sheet(team_rows(teams))

    async def start() -> str:
        # Each job starts from the same state: no teams, only the managers.
        for name in ("teams", "users", UNDO):
            await db[name].delete_many({})
        await db["users"].insert_many(
            [
                {
                    "_id": user_id("default", manager_phone(i)),
                    "org_id": "default",
                    "phone": manager_phone(i),
                    "name": f"Manager {i}",
                }
                for i in range(1, teams + 1)
            ]
        )
        async with http.post(f"{url}/api/v1/jobs/teams", data=body, headers={"Content-Type": "text/csv"}) as resp:
            created = await resp.json()
            assert resp.status == 202, created
            return created["id"]

    def watch(job_id: str) -> Watcher:
        # The teams only: counting the users it marked too scans a larger
        # collection and reads a few times a second at best.
        return Watcher(lambda: db["teams"].count_documents({"job_id": job_id}))

    return {
        "pause": await pauses(http, url, count, rng, start, watch),
        "terminate": await terminate_at_half(http, url, start, teams, "teams_deleted", limit),
    }


async def one_load(server: BenchDatabase, logs: Path, load: str, args: argparse.Namespace, path: Path) -> dict:
    rng = random.Random(f"{args.seed}-{load}")
    hog = start_hog() if load == "hog" else None
    uri = server.uri(f"stop-{load}")
    svc = ServiceProcess(uri, logs, f"stop-{load}", LOG_LEVEL="WARNING").start()
    client = AsyncMongoClient(uri)
    db = client.get_default_database()
    loads = [os.getloadavg()[0]]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            out: dict = {}
            print(f"{load}: import ...", flush=True)
            out["import"] = await import_case(http, svc.url, db, path, args.rows, args.pauses, rng, args.terminate_limit)
            loads.append(os.getloadavg()[0])
            print(f"{load}: {out['import']}\n{load}: export ...", flush=True)
            out["export"] = await export_case(
                http, svc.url, db, out["import"].pop("dataset"), args.rows, args.pauses, rng, args.terminate_limit
            )
            loads.append(os.getloadavg()[0])
            print(f"{load}: {out['export']}\n{load}: teams ...", flush=True)
            out["teams"] = await teams_case(http, svc.url, db, args.teams, args.pauses, rng, args.terminate_limit)
            loads.append(os.getloadavg()[0])
            print(f"{load}: {out['teams']}", flush=True)
            out["load"] = f"{min(loads):.1f}–{max(loads):.1f}"
            return out
    finally:
        await client.close()
        svc.stop()
        if hog is not None:
            hog.kill()
            hog.wait()


async def main(args: argparse.Namespace) -> None:
    path = data_file(args.rows)
    server = BenchDatabase().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    results: dict = {"machine": machine(server), "rows": args.rows, "teams": args.teams, "seed": args.seed}
    try:
        for load in ("idle", "hog"):
            results[load] = await one_load(server, logs, load, args, path)
    finally:
        server.close()
    write_results("stop", results, render(results))
    print(render(results))


def render(r: dict) -> str:
    def ms(s: dict) -> str:
        return f"{s['p50']:.0f} / {s['p95']:.0f} / {s['max']:.0f}"

    lines = [
        f"Measured by `bench/stop_bench.py` on {r['machine']}; a real `python -m service` with the default "
        f"settings; {r['rows']:,} rows imported, a background export of them, {r['teams']:,} teams; "
        f"{r['idle']['import']['pause']['pauses']} pauses of each at random moments (seed {r['seed']}). "
        f'"idle": no load added (the machine is shared: load average {r["idle"]["load"]} on 2 cores while it ran); '
        f'"hog": a busy loop on a core as well (load average {r["hog"]["load"]}). '
        'Pause times in ms, p50 / p95 / max; "landed" is the last write the database shows after the request.',
        "",
        "| job | load | request → `paused` | request → last write landed | p95 ≤ 250 ms | wrote while paused "
        "| terminate at 50% → `terminated` | rolled back |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, unit in (("import", "rows"), ("export", None), ("teams", "teams")):
        for load in ("idle", "hog"):
            p, t = r[load][kind]["pause"], r[load][kind]["terminate"]
            if not unit:
                undone = "the partial file"
            elif t["finished"]:
                undone = f"{t['undone']:,} {unit} at {t['per_second']:,} {unit}/s (written in {t['write_seconds']} s)"
            else:
                undone = f"{t['undone']:,} {unit} so far (written in {t['write_seconds']} s)"
            if kind == "import":  # the goal: no longer than writing them took
                undone += f" {ok(t['finished'] and t['seconds'] <= t['write_seconds'])}"
            took = f"{t['seconds']} s" if t["finished"] else f"not done after {t['seconds']:.0f} s"
            lines.append(
                f"| {kind} | {load} | {ms(p['paused_ms'])} | {ms(p['landed_ms'])} "
                f"| {ok(p['paused_ms']['p95'] <= TARGET_MS)} | {p['wrote_while_paused']} "
                f"| {took} | {undone} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:  # the README table again from bench/results/stop.json
        stored = json.loads((RESULTS / "stop.json").read_text())
        write_results("stop", stored, render(stored))
        sys.exit()
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--pauses", type=int, default=20)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--terminate-limit", type=float, default=150, help="seconds to wait for a rollback")
    asyncio.run(main(parser.parse_args()))
