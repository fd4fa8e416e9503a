"""CPU per row (issues 14 and 22). Run: .venv/bin/python bench/cpu_bench.py [--rows N] [--rounds R]

The database is the bottleneck on this machine, so wall-clock ratios say little
about a real MongoDB; what the service controls is its own CPU per row, which is
measured here independently of the database. In one run, alternating round
after round (the machine is shared and its speed drifts), each round first
with the machine as it is ("idle") and then with a busy-loop process taking a
core ("hog"):
- the import floor: csv.reader over the file plus bson.encode of exactly the
  documents the service stores (and, idle only, the export floor:
  bson.decode_all of those documents from raw BSON, written with csv.writer);
- idle only, the component: the service's real parsing, typing and encoding
  code (service.jobs.workers.built_batches) fed from the file, the encoded
  batches discarded (no database), with 1, 2 and 3 worker processes: CPU per
  row and rows per second;
- the service: a real `python -m service` importing the file with
  JOB_WORKERS=1 (in-process) and with JOB_WORKERS=2 (two worker processes),
  side by side: CPU (user + sys, from /proc, over the whole process tree:
  the service and its workers) during the upload and the import job, and the
  import's end-to-end time (upload started → job finished); idle, the
  in-process service then exports the dataset into GridFS.
The last round also measures each process's peak RSS and /healthz latency
while two imports run, idle, with each setting.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from bson import decode_all, encode
from common import (
    RESULTS,
    BenchDatabase,
    ServiceProcess,
    data_file,
    done,
    healthz_latency,
    machine,
    ok,
    p99,
    seconds_between,
    start_hog,
    upload,
    wait_job,
    write_results,
)
from pymongo import AsyncMongoClient

from service.csvio.records import RecordCounter  # noqa: E402
from service.csvio.schema import parse_header  # noqa: E402
from service.jobs.kinds.imports import RowBuilder  # noqa: E402
from service.jobs.repo import FINISHED  # noqa: E402
from service.jobs.workers import BuildPool, built_batches  # noqa: E402

CLOCK = os.sysconf("SC_CLK_TCK")
JOB_ID = "6b0281ee996d3c2cf9fce104"
BATCH = 1000
LOADS = ("idle", "hog")
WARM_ROWS = 30_000  # three default batches


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants."""
    total, stack = 0.0, [pid]
    while stack:
        proc = stack.pop()
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK
            for task in os.listdir(f"/proc/{proc}/task"):
                stack += [int(c) for c in Path(f"/proc/{proc}/task/{task}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def tree_peak_rss(pid: int) -> list[float]:
    """VmHWM (MB) of a process and each of its live descendants."""
    peaks, stack = [], [pid]
    while stack:
        proc = stack.pop()
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
            for task in os.listdir(f"/proc/{proc}/task"):
                stack += [int(c) for c in Path(f"/proc/{proc}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            pass
    return peaks


def the_documents(path: Path):
    """(row, document) as the service stores them: every column a string."""
    now = dt.datetime.now(dt.timezone.utc)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        for n, row in enumerate(reader, 1):
            yield (
                n,
                {
                    "_id": f"default/bench/{JOB_ID}:{n:010d}",
                    "org_id": "default",
                    "dataset": "bench",
                    "job_id": JOB_ID,
                    "row": n,
                    "data": dict(zip(header, row)),
                    "created_at": now,
                },
            )


def floor_import(path: Path) -> float:
    """CPU µs per row of csv.reader + bson.encode of the service's documents."""
    started = time.process_time()
    rows = 0
    for rows, doc in the_documents(path):  # noqa: B007 (the count is read after the loop)
        encode(doc)
    return (time.process_time() - started) / rows * 1e6


def floor_export(path: Path) -> float:
    """CPU µs per row of decoding the stored documents from raw BSON and writing
    their columns with csv.writer; the BSON is made beforehand, untimed."""
    columns = parse_header(path.open("rb").read(1 << 16), False).columns
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    spent, rows, batch = 0.0, 0, []
    for rows, doc in the_documents(path):  # noqa: B007 (the count is read after the loop)
        batch.append(encode(doc))
        if len(batch) == BATCH:
            spent += _decode_and_write(b"".join(batch), columns, writer, out)
            batch = []
    if batch:
        spent += _decode_and_write(b"".join(batch), columns, writer, out)
    return spent / rows * 1e6


def _decode_and_write(raw: bytes, columns: list[str], writer, out: io.StringIO) -> float:
    started = time.process_time()
    writer.writerows([[doc["data"][c] for c in columns] for doc in decode_all(raw)])
    out.getvalue().encode()
    out.seek(0)
    out.truncate()
    return time.process_time() - started


class Job:
    """What RowBuilder reads of a job (a JobContext's params, org_id and job_id)."""

    def __init__(self, columns: list[str], rows: int) -> None:
        # "rows" is the upload's record count, which spreads the dataset
        # profile's 10,000 sampled rows over the file (without it every row
        # is profiled, as the component did until this was noticed).
        self.params = {"columns": columns, "types": {}, "dataset": "bench", "rows": rows}
        self.org_id = "default"
        self.job_id = JOB_ID
        self.decimal128 = True  # MongoDB stores Decimal128


async def component(path: Path, workers: int) -> dict[str, float]:
    """The real parse + type + encode path from the file, batches discarded."""
    pool = BuildPool(workers, csv.field_size_limit())
    try:
        # Workers started and their imports done before timing, as in a service
        # that has run an import before.
        await _built(data_file(20 * workers * BATCH), pool)
        return await _built(path, pool)
    finally:
        pool.close(wait=True)


def count_rows(path: Path) -> int:
    """The upload's record count, as the service makes it (header excluded)."""
    counter = RecordCounter()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            counter.feed(chunk)
    return counter.finish() - 1


async def _built(path: Path, pool: BuildPool) -> dict[str, float]:
    with open(path, "rb") as f:
        header = parse_header(f.read(1 << 20), False)
        f.seek(header.data_start.offset)

        async def read(size: int) -> bytes:
            return f.read(size)

        me = os.getpid()
        cpu, wall, rows = tree_cpu(me), time.perf_counter(), 0
        builder = RowBuilder(Job(header.columns, count_rows(path)))
        async for built in built_batches(read, header.data_start, BATCH, 8 << 20, builder, pool):
            rows += built.processed
        wall, cpu = time.perf_counter() - wall, tree_cpu(me) - cpu
    return {"us_per_row": round(cpu / rows * 1e6, 2), "rows_per_s": round(rows / wall)}


async def service_round(
    http, db: BenchDatabase, name: str, path: Path, workers: int, rows: int, logs: Path, *, export: bool, healthz: bool
) -> dict:
    # FerretDB sorts a 1,000,000-row export in memory: more than the default
    # 30 s deadline per operation on a busy machine.
    env = {
        "JOB_WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
        "MAX_IMPORTS_PER_ORG": "2",
        "DB_TIMEOUT_SECONDS": "900",
    }
    uri = db.uri(name)
    svc = ServiceProcess(uri, logs, name, **env).start()
    watcher = AsyncMongoClient(uri)

    async def finished_job(job_id: str) -> dict:
        """Waits by reading the job's state from the database: polling the API
        would count the service's CPU for answering the benchmark as the job's."""
        while (doc := await watcher.get_default_database()["jobs"].find_one({"_id": job_id}, {"state": 1})) is None or doc[
            "state"
        ] not in {s.value for s in FINISHED}:
            await asyncio.sleep(0.5)
        return await wait_job(http, svc.url, job_id, done)

    try:
        pid = svc.process.pid
        # An import of a few batches first: lazy imports done, and every worker
        # process started (the pool spawns them as batches are submitted; a
        # worker's start-up costs about 0.5 s of CPU, once per process).
        warm = await upload(http, svc.url, data_file(WARM_ROWS), dataset="warmup")
        await wait_job(http, svc.url, warm["id"], done, interval=0.5)
        before = tree_cpu(pid)
        began = time.time()
        created = await upload(http, svc.url, path, dataset="bench")
        uploaded = tree_cpu(pid)
        finished = await finished_job(created["id"])
        assert finished["state"] == "completed" and finished["progress"]["inserted"] == rows, finished
        imported = tree_cpu(pid)
        out = {
            "upload_us": round((uploaded - before) / rows * 1e6, 2),
            "job_us": round((imported - uploaded) / rows * 1e6, 2),
        }
        out["import_us"] = round(out["upload_us"] + out["job_us"], 2)
        # The service's own clocks for when the job ran; the same machine's.
        out["job_s"] = round(seconds_between(finished["started_at"], finished["finished_at"]), 2)
        finished_at = dt.datetime.fromisoformat(finished["finished_at"].replace("Z", "+00:00")).timestamp()
        out["end_to_end_s"] = round(finished_at - began, 2)
        if export:
            async with http.post(f"{svc.url}/api/v1/jobs/export", json={"dataset": "bench"}) as resp:
                job = await resp.json()
                assert resp.status == 202, job
            exported = await finished_job(job["id"])
            assert exported["state"] == "completed" and exported["progress"]["processed"] == rows, exported
            out["export_us"] = round((tree_cpu(pid) - imported) / rows * 1e6, 2)
        if healthz:
            out.update(await healthz_during_two_imports(http, svc.url, path))
        out["peak_rss_mb"] = [round(p, 1) for p in tree_peak_rss(pid)]
        return out
    finally:
        await watcher.close()
        svc.stop()
        db.drop(name)


async def healthz_during_two_imports(http, url: str, path: Path) -> dict:
    stop = asyncio.Event()

    sampler = asyncio.create_task(healthz_latency(url, stop))
    jobs = [await upload(http, url, path, dataset=f"probe{i}") for i in range(2)]
    for j in jobs:
        await wait_job(http, url, j["id"], done, interval=0.2)
    stop.set()
    samples = await sampler
    return {"healthz_samples": len(samples), "healthz_p99_ms": p99(samples)}


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """median (lowest–highest) of the rounds."""
    if len(values) == 1:
        return fmt.format(values[0])
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low}–{high})"


async def main(rows: int, rounds: int, worker_counts: list[int]) -> None:
    path = data_file(rows)
    db = BenchDatabase().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    results: dict = {"machine": machine(db), "rows": rows, "rounds": []}
    loads = [os.getloadavg()[0]]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            for n in range(1, rounds + 1):
                last = n == rounds
                one: dict = {}
                for load in LOADS:
                    hog = start_hog() if load == "hog" else None
                    try:
                        print(f"round {n}, {load}: floors ...", flush=True)
                        one[f"floor_import_us_{load}"] = round(floor_import(path), 2)
                        if load == "idle":
                            one["floor_export_us"] = round(floor_export(path), 2)
                            for workers in worker_counts:
                                print(f"round {n}: component, {workers} worker(s) ...", flush=True)
                                one[f"component_{workers}"] = await component(path, workers)
                        for workers in (1, 2):
                            print(f"round {n}, {load}: the service, JOB_WORKERS={workers} ...", flush=True)
                            one[f"service_{load}_{workers}"] = await service_round(
                                http,
                                db,
                                f"cpu{n}{load}{workers}",
                                path,
                                workers,
                                rows,
                                logs,
                                export=load == "idle" and workers == 1,
                                healthz=last and load == "idle",
                            )
                    finally:
                        if hog is not None:
                            hog.kill()
                            hog.wait()
                    loads.append(os.getloadavg()[0])
                print(one, flush=True)
                results["rounds"].append(one)
    finally:
        db.close()
    results["load"] = f"{min(loads):.0f}–{max(loads):.0f} on {os.cpu_count()} cores"
    write_results("cpu", results, render(results, worker_counts))


def render(results: dict, worker_counts: list[int]) -> str:
    rounds = results["rounds"]
    floor_out = [r["floor_export_us"] for r in rounds]
    svc = [r["service_idle_1"] for r in rounds]
    ratio_out = [s["export_us"] / r["floor_export_us"] for s, r in zip(svc, rounds)]
    last = rounds[-1]
    one, two = last["service_idle_1"], last["service_idle_2"]
    load = f", load average {results['load']} while it ran" if "load" in results else ""
    lines = [
        f"Measured by `bench/cpu_bench.py` on {results['machine']}{load} (a machine shared with other "
        "work while it ran: the figures are noisy); "
        f"the benchmark's {results['rows']:,}-row, 10-column CSV; {len(rounds)} rounds, each running the floors, "
        "the component and the service one after the other, first as the machine was (idle) and then with a "
        "busy loop taking a core (hog); values are the median of the rounds (lowest–highest). CPU is user + "
        "system time from `/proc` over the whole process tree (the service and its worker processes); the "
        "ratio to the floor is taken within a round and a load.",
        "",
        "| import, the service | load | CPU µs per row (upload + job) | ratio to floor | ratio to in-process "
        "| end to end (s) | the job (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for load in LOADS:
        for workers in (1, 2):
            runs = [r[f"service_{load}_{workers}"] for r in rounds]
            to_floor = [s["import_us"] / r[f"floor_import_us_{load}"] for s, r in zip(runs, rounds)]
            to_one = [s["import_us"] / r[f"service_{load}_1"]["import_us"] for s, r in zip(runs, rounds)]
            if workers == 1:
                floor_mark = f" ≤ 1.5 {ok(statistics.median(to_floor) <= 1.5)}"
                one_cell = "1"
            else:
                floor_mark = ""
                one_cell = f"**{spread(to_one)}** ≤ 1.2 {ok(statistics.median(to_one) <= 1.2)}"
            label = "in-process (JOB_WORKERS=1)" if workers == 1 else "2 workers (JOB_WORKERS=2)"
            lines.append(
                f"| {label} | {load} | {spread([s['import_us'] for s in runs])} | **{spread(to_floor)}**{floor_mark} "
                f"| {one_cell} | {spread([s['end_to_end_s'] for s in runs])} | {spread([s['job_s'] for s in runs])} |"
            )
    lines += [
        "",
        "| CPU per row, idle | µs | ratio to floor | target |",
        "|---|---|---|---|",
        f"| import floor: `csv.reader` + `bson.encode` of the stored documents "
        f"| {spread([r['floor_import_us_idle'] for r in rounds])} (hog: "
        f"{spread([r['floor_import_us_hog'] for r in rounds])}) | 1 | |",
        f"| — the upload (HTTP body → GridFS, record count), in-process | {spread([s['upload_us'] for s in svc])} | | |",
        f"| — the job (GridFS read, parse, type, encode, insert, checkpoints), in-process "
        f"| {spread([s['job_us'] for s in svc])} | | |",
        f"| — of the job: parse + type + encode (the component, in-process) "
        f"| {spread([r['component_1']['us_per_row'] for r in rounds])} | | |",
        f"| export floor: `bson.decode_all` + `csv.writer` | {spread(floor_out)} | 1 | |",
        f"| export, the service (background job into GridFS) | {spread([s['export_us'] for s in svc])} "
        f"| **{spread(ratio_out)}** | ≤ 1.5 {ok(statistics.median(ratio_out) <= 1.5)} |",
        "",
        "| parse + type + encode, no database (the component), idle | CPU µs per row | rows/s | vs in-process |",
        "|---|---|---|---|",
    ]
    base = [r["component_1"]["rows_per_s"] for r in rounds]
    for workers in worker_counts:
        comp = [r[f"component_{workers}"] for r in rounds]
        speed = [c["rows_per_s"] / b for c, b in zip(comp, base)]
        label = "in-process (JOB_WORKERS=1)" if workers == 1 else f"{workers} worker processes"
        cpu, rate = spread([c["us_per_row"] for c in comp]), spread([c["rows_per_s"] for c in comp], "{:,.0f}")
        lines.append(f"| {label} | {cpu} | {rate} | {spread(speed)} |")
    peaks = two["peak_rss_mb"]
    lines += [
        "",
        f"Last round, idle: peak RSS per process {', '.join(f'{p} MB' for p in one['peak_rss_mb'])} with "
        f"JOB_WORKERS=1; {', '.join(f'{p} MB' for p in peaks)} with JOB_WORKERS=2 (the service, then its "
        f"workers and multiprocessing's resource tracker; target < 200 MB each {ok(max(peaks) < 200)}). "
        f"`/healthz` p99 while two imports of the same file ran: {one['healthz_p99_ms']} ms with JOB_WORKERS=1 "
        f"({one['healthz_samples']} requests), {two['healthz_p99_ms']} ms with JOB_WORKERS=2 "
        f"(target < 50 ms {ok(max(one['healthz_p99_ms'], two['healthz_p99_ms']) < 50)}).",
    ]
    return "\n".join(lines)


def rerender(worker_counts: list[int]) -> None:
    """Writes the README table again from bench/results/cpu.json."""
    results = json.loads((RESULTS / "cpu.json").read_text())
    write_results("cpu", results, render(results, worker_counts))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2,3", help="worker counts for the component benchmark")
    parser.add_argument("--render", action="store_true", help="only rewrite the README table from the last results")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    if args.render:
        rerender(counts)
    else:
        asyncio.run(main(args.rows, args.rounds, counts))
