"""Load run (issue 12), on loopback only, bounded in count and time: 2 replicas
on one database; 20 orgs, each with a running and a queued import; 4 streamed
exports; 200 event subscribers; 50 clients listing and reading jobs for
--seconds (60). Checks: zero 5xx, /healthz p99 per replica, every import
completes with exactly its rows, peak RSS per replica; reports the request
rate each replica held.

Orgs are real: the replicas verify JWTs against a key pair the benchmark makes
(AUTH_JWT_PUBLIC_KEY), and each org's requests carry a token minted for it
(role operator), so per-org slots, quotas and caps apply as in production.

    .venv/bin/python bench/load_bench.py [--seconds 60] [--rows 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import secrets
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from common import BenchDatabase, ServiceProcess, data_file, done, healthz_latency, machine, ok, p99, peak_rss_mb, write_results

from tests.support.authkit import AUDIENCE, ISSUER, SigningKey  # common put the project on sys.path

ORGS = 20
EXPORTS = 4
SUBSCRIBERS = 200
READERS = 50


class Load:
    def __init__(self, replicas: list[ServiceProcess], tokens: dict[str, str]) -> None:
        self.replicas = replicas
        self.tokens = tokens
        self.orgs = sorted(tokens)
        self.statuses: dict[str, Counter[int]] = {r.url: Counter() for r in replicas}
        self.errors: list[str] = []
        self.aborted: list[str] = []  # streamed downloads cut off (their job failed)
        self.stop = asyncio.Event()

    def headers(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[org]}"}

    def count(self, url: str, status: int, what: str) -> None:
        self.statuses[url][status] += 1
        if status >= 500:
            self.errors.append(f"{status} from {url} {what}")


async def start_import(http, load: Load, url: str, org: str, dataset: str, path: Path) -> dict:
    with open(path, "rb") as f:
        body = f.read()
    async with http.post(
        f"{url}/api/v1/jobs/import",
        params={"dataset": dataset, "batch_size": "1000"},
        data=body,
        headers={"Content-Type": "text/csv", **load.headers(org)},
    ) as resp:
        load.count(url, resp.status, "import")
        job = await resp.json(content_type=None)
        assert resp.status == 202, job
        return {**job, "org": org, "url": url}


async def reader(http, load: Load, jobs: list[dict]) -> None:
    """Lists jobs and reads one, alternating replicas, until stopped."""
    urls = itertools.cycle(r.url for r in load.replicas)
    while not load.stop.is_set():
        url, job = next(urls), random.choice(jobs)
        headers = load.headers(job["org"])
        async with http.get(f"{url}/api/v1/jobs", params={"limit": "50"}, headers=headers) as resp:
            await resp.read()
            load.count(url, resp.status, "list")
        async with http.get(f"{url}/api/v1/jobs/{job['id']}", headers=headers) as resp:
            await resp.read()
            load.count(url, resp.status, "get")


async def subscriber(http, load: Load, url: str, job: dict) -> None:
    """Follows one job's events until its end (or the run's)."""
    async with http.get(f"{url}/api/v1/jobs/{job['id']}/events", headers=load.headers(job["org"])) as resp:
        load.count(url, resp.status, "events")
        if resp.status != 200:
            return
        async for line in resp.content:
            if line.startswith(b"event: end"):
                return


async def exporter(http, load: Load, url: str, org: str, dataset: str) -> None:
    """Streams the dataset's export again and again until stopped."""
    while not load.stop.is_set():
        async with http.post(f"{url}/api/v1/exports/{dataset}.csv", headers=load.headers(org)) as resp:
            load.count(url, resp.status, "export")
            if resp.status == 429:  # over a stream cap: retry as a browser would
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            try:
                async for _ in resp.content.iter_chunked(1 << 16):
                    pass
            except aiohttp.ClientPayloadError as exc:  # the export job failed and aborted the download
                load.aborted.append(f"{url} {dataset}: {exc}")


async def main(seconds: float, rows: int) -> None:
    key = SigningKey.ec("load-bench")
    expires = int(time.time()) + 4 * 3600
    tokens = {f"org{i:02d}": key.mint(f"bench-{i}", org=f"org{i:02d}", exp=expires) for i in range(ORGS)}
    path = data_file(rows)
    db = BenchDatabase().start()
    logs = Path(tempfile.mkdtemp(prefix="load-bench-"))
    env = {
        "MAX_RUNNING_JOBS": str(ORGS // 2 + 2),
        "JOB_POLL_SECONDS": "1",
        # FerretDB on SQLite serialises every write on this machine: under this
        # load one operation can take longer than the default 30 s deadline.
        "DB_TIMEOUT_SECONDS": "300",
        "LOG_FORMAT": "json",
        "AUTH_JWT_PUBLIC_KEY": key.public_pem(),
        "AUTH_JWT_ISSUER": ISSUER,
        "AUTH_JWT_AUDIENCE": AUDIENCE,
        "AUTH_API_KEY_PEPPER": secrets.token_hex(32),  # required; the run uses no API key
    }
    uri = db.uri("load")
    replicas = [ServiceProcess(uri, logs, f"r{i}", **env).start() for i in range(2)]
    load = Load(replicas, tokens)
    results: dict = {"machine": machine(db), "seconds": seconds, "rows": rows, "orgs": len(load.orgs)}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=900)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
            # A dataset to export for each of the orgs that stream one, imported before the run.
            bases = [await start_import(http, load, replicas[0].url, org, "base", path) for org in load.orgs[:EXPORTS]]
            for base in bases:
                while not done(
                    await (
                        await http.get(f"{replicas[0].url}/api/v1/jobs/{base['id']}", headers=load.headers(base["org"]))
                    ).json()
                ):
                    await asyncio.sleep(0.5)

            jobs = []
            for n, org in enumerate(load.orgs):
                url = replicas[n % 2].url
                for k in ("a", "b"):  # the first runs, the second waits behind it
                    jobs.append(await start_import(http, load, url, org, f"d{k}", path))
            stops = [asyncio.Event() for _ in replicas]
            samplers = [asyncio.create_task(healthz_latency(r.url, s)) for r, s in zip(replicas, stops)]
            subscribers = [
                asyncio.create_task(subscriber(http, load, replicas[i % 2].url, jobs[i % len(jobs)])) for i in range(SUBSCRIBERS)
            ]
            exporters = [
                asyncio.create_task(exporter(http, load, replicas[i % 2].url, load.orgs[i], "base")) for i in range(EXPORTS)
            ]
            readers = [asyncio.create_task(reader(http, load, jobs)) for _ in range(READERS)]
            started = time.monotonic()
            await asyncio.sleep(seconds)
            load.stop.set()
            await asyncio.gather(*readers, *exporters)
            elapsed = time.monotonic() - started
            results["requests_per_second"] = {
                r.url.rsplit(":", 1)[1]: round(sum(load.statuses[r.url].values()) / elapsed, 1) for r in replicas
            }

            # Every import completes, with exactly its rows.
            deadline = time.monotonic() + 1800
            finals = []
            for job in jobs:
                while True:
                    async with http.get(f"{job['url']}/api/v1/jobs/{job['id']}", headers=load.headers(job["org"])) as resp:
                        current = await resp.json()
                    if done(current) or time.monotonic() > deadline:
                        finals.append(current)
                        break
                    await asyncio.sleep(1)
            await asyncio.wait(subscribers, timeout=60)
            for task in subscribers:
                task.cancel()
            for stop in stops:
                stop.set()
            samples = [await s for s in samplers]
            results["jobs"] = len(jobs)
            results["jobs_exact"] = sum(
                1
                for f in finals
                if f["state"] == "completed" and f["progress"]["inserted"] == rows and f["progress"]["failed"] == 0
            )
            results["all_jobs_seconds"] = round(time.monotonic() - started, 1)
            results["status_5xx"] = len(load.errors)
            results["downloads_aborted"] = load.aborted
            results["statuses"] = {r.url.rsplit(":", 1)[1]: dict(load.statuses[r.url]) for r in replicas}
            results["healthz_p99_ms"] = [p99(s) for s in samples]
            results["healthz_p50_ms"] = [round(statistics.median(s), 2) for s in samples]
            results["peak_rss_mb"] = [round(peak_rss_mb(r.process.pid), 1) for r in replicas]
    finally:
        for r in replicas:
            r.stop()
        db.close()

    r = results
    markdown = f"""
Measured by `bench/load_bench.py` on {r["machine"]}; 2 replicas on one database, {r["orgs"]} orgs (each with its own JWT, role operator), each with a running and a queued import of {rows:,} rows, {EXPORTS} streamed exports (restarted as they end), {SUBSCRIBERS} event subscribers and {READERS} clients listing and reading jobs for {seconds:g} s.

| measure | result | target |
|---|---|---|
| 5xx answers | {r["status_5xx"]} | 0 {ok(r["status_5xx"] == 0)} |
| streamed downloads cut off | {len(r["downloads_aborted"])} | 0 {ok(not r["downloads_aborted"])} |
| imports completed with exactly their rows | {r["jobs_exact"]} of {r["jobs"]} (all done {r["all_jobs_seconds"]} s after the start) | all {ok(r["jobs_exact"] == r["jobs"])} |
| `/healthz` p99 per replica (p50) | {" / ".join(f"{p} ms ({m})" for p, m in zip(r["healthz_p99_ms"], r["healthz_p50_ms"]))} | < 50 ms {ok(max(r["healthz_p99_ms"]) < 50)} |
| peak RSS per replica | {" / ".join(f"{m} MB" for m in r["peak_rss_mb"])} | < 250 MB {ok(max(r["peak_rss_mb"]) < 250)} |
| requests per second each replica held | {" / ".join(str(v) for v in r["requests_per_second"].values())} | — |
"""
    write_results("load", results, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rows))
