"""Memory bounded by bytes (issue 12): peak RSS of a fresh service process

- importing a file of 100 KB rows at batch_size=10000 (1,500 rows: 150 MB,
  the file that peaked at 509 MB before batches were bounded by bytes);
- streaming the export of that dataset at batch_size=10000 (before, one
  cursor reply was 150 MB and broke the download off);
- running a teams job whose rows have 1,000 members each;

and /healthz latency (p99) sampled every 10 ms throughout each run.

    .venv/bin/python bench/bounded_bench.py [--wide-rows 1500] [--team-rows 30]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from common import (
    DATA,
    BenchDatabase,
    ServiceProcess,
    done,
    healthz_latency,
    machine,
    ok,
    p99,
    peak_rss_mb,
    upload,
    wait_job,
    write_results,
)

ROW_BYTES = 100_000
# FerretDB scans `users` for each teams batch; on a busy machine one such
# command can outlast the default 30 s operation deadline.
ENV = {"DB_TIMEOUT_SECONDS": "600"}


def wide_file(rows: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"wide-{rows}.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["id", "note", "blob"])
            for i in range(1, rows + 1):
                writer.writerow([i, f"row {i}", f"{i:08d}" + "abcdefghij" * (ROW_BYTES // 10)])
        tmp.rename(path)
    return path


def teams_file(rows: int, members: int = 1000) -> Path:
    """Team i is managed by +1 201 555 iiii; its members are distinct numbers of
    the 202-220 area codes (1,000 a row)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"teams-{rows}x{members}.csv"
    areas = (202, 203, 204, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 220)
    if not path.exists():
        with open(path, "w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["team", "manager_name", "manager_phone", "members"])
            n = 0
            for i in range(1, rows + 1):
                phones = []
                for _ in range(members):
                    phones.append(f"({areas[n // 10_000]}) 555-{n % 10_000:04d}")
                    n += 1
                writer.writerow([f"Team {i}", f"Manager {i}", f"(201) 555-{i:04d}", ";".join(phones)])
    return path


async def measured(http, svc: ServiceProcess, work) -> dict:
    """Runs ``work`` while sampling /healthz; returns its numbers and peak RSS."""
    stop = asyncio.Event()
    sampler = asyncio.create_task(healthz_latency(svc.url, stop))
    started = time.monotonic()
    try:
        extra = await work()
    finally:
        stop.set()
        samples = await sampler
    load = os.getloadavg()[0]
    return {
        "load_average": round(load, 1),
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": round(peak_rss_mb(svc.process.pid), 1),
        "healthz_samples": len(samples),
        "healthz_p50_ms": round(statistics.median(samples), 2),
        "healthz_p99_ms": p99(samples),
        **(extra or {}),
    }


async def main(wide_rows: int, team_rows: int) -> None:
    wide, teams = wide_file(wide_rows), teams_file(team_rows)
    db = BenchDatabase().start()
    results: dict = {"machine": machine(db), "wide_rows": wide_rows, "wide_mb": round(wide.stat().st_size / 1e6, 1)}
    logs = Path(tempfile.mkdtemp(prefix="bounded-bench-"))
    procs: list[ServiceProcess] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            uri = db.uri("bounded")
            print(f"import of {wide_rows} rows of 100 KB at batch_size=10000 ...", flush=True)
            svc = ServiceProcess(uri, logs, "import", **ENV).start()
            procs.append(svc)
            # The machine's own noise: the same sampling with no job at all.
            results["idle"] = await measured(http, svc, lambda: asyncio.sleep(15))

            async def do_import():
                job = await upload(http, svc.url, wide, dataset="wide", batch_size=10000)
                final = await wait_job(http, svc.url, job["id"], done, interval=0.5)
                assert final["state"] == "completed" and final["progress"]["inserted"] == wide_rows, final

            results["import"] = await measured(http, svc, do_import)
            svc.stop()

            print("streamed export of it at batch_size=10000 ...", flush=True)
            svc = ServiceProcess(uri, logs, "export", **ENV).start()
            procs.append(svc)

            async def do_export():
                got = 0
                async with http.post(f"{svc.url}/api/v1/exports/wide.csv", params={"batch_size": "10000"}) as resp:
                    assert resp.status == 200, await resp.text()
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        got += len(chunk)
                return {"bytes": got}

            results["export"] = await measured(http, svc, do_export)
            assert results["export"]["bytes"] >= wide.stat().st_size, results["export"]
            svc.stop()

            print(f"teams job of {team_rows} rows of 1,000 members ...", flush=True)
            svc = ServiceProcess(db.uri("bounded_teams"), logs, "teams", **ENV).start()
            procs.append(svc)

            async def do_teams():
                with open(teams, "rb") as f:
                    body = f.read()
                async with http.post(
                    f"{svc.url}/api/v1/jobs/teams", params={"batch_size": "10"}, data=body, headers={"Content-Type": "text/csv"}
                ) as resp:
                    job = await resp.json()
                    assert resp.status == 202, job
                final = await wait_job(http, svc.url, job["id"], done, interval=0.5)
                assert final["state"] == "completed", final
                return {"teams": final["progress"]["teams_created"], "users": final["progress"]["users_created"]}

            results["teams"] = await measured(http, svc, do_teams)
            svc.stop()
    finally:
        for proc in procs:
            proc.stop()
        db.close()

    i, e, t, z = results["import"], results["export"], results["teams"], results["idle"]
    markdown = f"""
Measured by `bench/bounded_bench.py` on {results["machine"]}; each run in a fresh service process, `/healthz` sampled every 10 ms throughout; load average {z["load_average"]} (other work on the machine) when it ran.

| run | time | peak RSS | `/healthz` p99 (p50) |
|---|---|---|---|
| no job at all (the machine's own latency, for comparison) | {z["seconds"]} s | {z["peak_rss_mb"]} MB | {z["healthz_p99_ms"]} ms ({z["healthz_p50_ms"]}) |
| import of {wide_rows:,} rows of 100 KB ({results["wide_mb"]} MB) at `batch_size=10000` | {i["seconds"]} s | **{i["peak_rss_mb"]} MB** (< 200 {ok(i["peak_rss_mb"] < 200)}) | {i["healthz_p99_ms"]} ms ({i["healthz_p50_ms"]}) {ok(i["healthz_p99_ms"] < 50)} |
| streamed export of that dataset at `batch_size=10000` | {e["seconds"]} s | **{e["peak_rss_mb"]} MB** (< 200 {ok(e["peak_rss_mb"] < 200)}) | {e["healthz_p99_ms"]} ms ({e["healthz_p50_ms"]}) {ok(e["healthz_p99_ms"] < 50)} |
| teams job, {team_rows} rows of 1,000 members ({t["teams"]} teams, {t["users"]:,} users created) | {t["seconds"]} s | **{t["peak_rss_mb"]} MB** (< 200 {ok(t["peak_rss_mb"] < 200)}) | {t["healthz_p99_ms"]} ms ({t["healthz_p50_ms"]}) {ok(t["healthz_p99_ms"] < 50)} |
"""
    write_results("bounded", results, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wide-rows", type=int, default=1500)
    parser.add_argument("--team-rows", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.wide_rows, args.team_rows))
