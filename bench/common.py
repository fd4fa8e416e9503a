"""Shared pieces of the benchmarks: data files, the database, service processes,
the machine description, and writing results into the README."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import http.client
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiofiles
import aiohttp
import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.devdb import DevDatabase, database_server, with_database  # noqa: E402
from tests.support.procs import ServiceProcess  # noqa: E402

DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
COLUMNS = ["id", "name", "email", "city", "day", "amount", "score", "active", "code", "note"]


def data_file(rows: int) -> Path:
    """A CSV of ``rows`` rows and 10 columns (~100 bytes a row), made once."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"rows-{rows}.csv"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(1, rows + 1):
            writer.writerow(
                [
                    i,
                    f"Person {i}",
                    f"person{i}@example.org",
                    ("Pune", "Lagos", "Lima", "Oslo")[i % 4],
                    f"20{10 + i % 10}-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
                    f"{(i * 37) % 100000 / 100:.2f}",
                    i % 97,
                    "true" if i % 3 else "false",
                    f"C{i % 9973:05d}",
                    "baseline upload",
                ]
            )
    tmp.rename(path)
    return path


class BenchDatabase:
    """The database server a benchmark measures: the one MONGODB_URI names, if
    set (to measure on MongoDB), or else a local FerretDB started for the run
    (tests.support.devdb.database_server decides). ``uri(name)`` hands out a database on
    it, dropped first (an earlier run's leftovers would skew the numbers);
    close() drops them again on a server the benchmark did not start, so a
    shared MongoDB is left as it was."""

    def __init__(self) -> None:
        self._server = contextlib.ExitStack()
        self.base = ""
        self.local: DevDatabase | None = None
        self.used: set[str] = set()

    def start(self) -> BenchDatabase:
        self.base, self.local = self._server.enter_context(database_server())
        return self

    def uri(self, name: str) -> str:
        if name not in self.used:
            self.used.add(name)
            self.drop(name)
        return with_database(self.base, name)

    def describe(self) -> str:
        """Which server this is, from its own buildInfo."""
        with pymongo.MongoClient(self.base, serverSelectionTimeoutMS=10_000) as client:
            info = client.admin.command("buildInfo")
        if "ferretdbVersion" in info:
            name = f"FerretDB {info['ferretdbVersion'].lstrip('v')}"
        else:
            name = f"MongoDB {info['version']}"
        if self.local is not None:
            return f"{name} (SQLite backend) on 127.0.0.1, started by the benchmark"
        return f"{name} at {urlsplit(self.base).hostname} (MONGODB_URI)"

    def close(self) -> None:
        if self.local is None:
            self.drop(*sorted(self.used))
        self._server.close()

    def drop(self, *names: str) -> None:
        with pymongo.MongoClient(self.base, serverSelectionTimeoutMS=10_000) as client:
            for name in names:
                client.drop_database(name)


def machine(database: BenchDatabase) -> str:
    """The machine and the database server, for the results."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {database.describe()}"
    )


def start_hog() -> subprocess.Popen:
    """A busy loop in its own process: a core's worth of CPU taken from the
    service and the database (end it with ``kill()`` and ``wait()``)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def upload(http: aiohttp.ClientSession, url: str, path: Path, **params: Any) -> dict[str, Any]:
    """Streams the file from disk as the request body (never read whole)."""

    async def chunks():
        async with aiofiles.open(path, "rb") as f:
            while chunk := await f.read(256 * 1024):
                yield chunk

    async with http.post(
        f"{url}/api/v1/jobs/import",
        params={k: str(v) for k, v in params.items()},
        data=chunks(),
        headers={"Content-Type": "text/csv"},
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 202, body
        return body


def _sample_healthz(url: str, interval: float, stop, out) -> None:
    """In its own process: GET /healthz on a new connection each time (as the
    kubelet's probe does), one every ``interval`` s, until ``stop`` is set."""
    parts = urlsplit(url)
    samples = []
    while not stop.is_set():
        started = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            failed = response.status != 200
        except OSError:
            failed = True
        finally:
            conn.close()
        # A failed probe is as bad as one that never answers.
        samples.append(float("inf") if failed else (time.perf_counter() - started) * 1000)
        time.sleep(interval)
    out.send(samples)


async def healthz_latency(url: str, stop: asyncio.Event, interval: float = 0.01) -> list[float]:
    """/healthz round trips in ms until ``stop`` is set, measured by a separate
    process: a sampler on the benchmark's own event loop would count the time
    that loop spends on the load it generates as the service's latency."""
    context = multiprocessing.get_context("spawn")
    stopped = context.Event()
    receive, send = context.Pipe(duplex=False)
    sampler = context.Process(target=_sample_healthz, args=(url, interval, stopped, send), daemon=True)
    sampler.start()
    try:
        await stop.wait()
    finally:
        stopped.set()
    samples = await asyncio.to_thread(receive.recv)
    await asyncio.to_thread(sampler.join)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2)


async def job(http: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/jobs/{job_id}") as resp:
        return await resp.json()


def done(j: dict[str, Any]) -> bool:
    """Whether a job has ended."""
    return j["state"] in ("completed", "failed", "terminated")


async def wait_job(http, url, job_id, predicate, timeout: float = 3600, interval: float = 0.05) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = await job(http, url, job_id)
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id}: {current['state']} {current['progress']}")
        await asyncio.sleep(interval)


async def control(http, url, job_id, action) -> dict[str, Any]:
    async with http.post(f"{url}/api/v1/jobs/{job_id}/{action}") as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 200, body
        return body


def seconds_between(a: str, b: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b.replace("Z", "+00:00")) - datetime.fromisoformat(a.replace("Z", "+00:00"))).total_seconds()


def ok(good: bool) -> str:
    """The mark a README table shows against a target."""
    return "✅" if good else "❌"


def write_results(name: str, results: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = README.read_text()
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += f"\n{block}\n"
    README.write_text(text)


__all__ = [
    "BenchDatabase",
    "ServiceProcess",
    "data_file",
    "done",
    "machine",
    "ok",
    "p99",
    "healthz_latency",
    "peak_rss_mb",
    "upload",
    "job",
    "wait_job",
    "control",
    "seconds_between",
    "start_hog",
    "write_results",
]
