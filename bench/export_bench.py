"""Export benchmark (issue 3). Run: .venv/bin/python bench/export_bench.py [--rows N]

Against one FerretDB, in one run:
- a dataset of N rows (and one of --small-rows) imported through the service;
- baseline: an AsyncMongoClient cursor (batch_size 1000) over the dataset in
  _id order, rows written with csv.writer to a file;
- the background export job (started_at -> finished_at) and the streamed
  export (request -> last byte), as ratios against the baseline;
- peak RSS (VmHWM) of fresh processes streaming the small and the large export;
- rows the server sent after a terminate of a streamed export.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import tempfile
import time
from pathlib import Path

import aiohttp
from common import (
    BenchDatabase,
    ServiceProcess,
    control,
    data_file,
    done,
    job,
    machine,
    ok,
    peak_rss_mb,
    seconds_between,
    upload,
    wait_job,
    write_results,
)
from pymongo import AsyncMongoClient


async def baseline(uri: str, dataset: str, out: Path) -> float:
    client = AsyncMongoClient(uri)
    records = client.get_default_database()["records"]
    started = time.perf_counter()
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        header = None
        cursor = records.find({"org_id": "default", "dataset": dataset}, sort=[("_id", 1)]).batch_size(1000)
        async for doc in cursor:
            if header is None:
                header = list(doc["data"])
                writer.writerow(header)
            writer.writerow([doc["data"].get(c) for c in header])
    took = time.perf_counter() - started
    await client.close()
    return took


async def stream(http, url: str, dataset: str) -> tuple[float, int, str]:
    started = time.perf_counter()
    size = 0
    async with http.post(f"{url}/api/v1/exports/{dataset}.csv") as resp:
        assert resp.status == 200
        job_id = resp.headers["X-Job-Id"]
        async for chunk in resp.content.iter_chunked(1 << 20):
            size += len(chunk)
    return time.perf_counter() - started, size, job_id


async def main(rows: int, small_rows: int) -> None:
    db = BenchDatabase().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    uri = db.uri("exports")
    results: dict = {"machine": machine(db), "rows": rows}
    procs: list[ServiceProcess] = []
    env = {"LOG_LEVEL": "WARNING", "MAX_IMPORTS_PER_ORG": "2"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            print("importing the datasets ...", flush=True)
            loader = ServiceProcess(uri, logs, "loader", **env).start()
            procs.append(loader)
            for name, n in (("big", rows), ("small", small_rows)):
                created = await upload(http, loader.url, data_file(n), dataset=name, types="id:int,day:date,score:int")
                assert (await wait_job(http, loader.url, created["id"], done))["state"] == "completed"

            print("baseline ...", flush=True)
            base = await baseline(uri, "big", Path(tempfile.mkdtemp()) / "plain.csv")
            results["baseline_seconds"] = round(base, 2)

            print("background export ...", flush=True)
            async with http.post(f"{loader.url}/api/v1/jobs/export", json={"dataset": "big"}) as resp:
                created = await resp.json()
            finished = await wait_job(http, loader.url, created["id"], done, interval=0.2)
            assert finished["state"] == "completed" and finished["progress"]["processed"] == rows, finished
            background = seconds_between(finished["started_at"], finished["finished_at"])
            results["background_seconds"] = round(background, 2)
            results["ratio_background"] = round(base / background, 3)
            results["file_mb"] = round(finished["progress"]["bytes"] / 2**20, 1)
            loader.stop()

            for name in ("small", "big"):
                print(f"streamed export of {name} (fresh process) ...", flush=True)
                svc = ServiceProcess(uri, logs, f"stream-{name}", **env).start()
                procs.append(svc)
                took, size, job_id = await stream(http, svc.url, name)
                streamed = await job(http, svc.url, job_id)
                assert streamed["state"] == "completed", streamed
                results[f"peak_rss_mb_stream_{name}"] = round(peak_rss_mb(svc.process.pid), 1)
                if name == "big":
                    results["stream_seconds"] = round(took, 2)
                    results["ratio_stream"] = round(base / took, 3)
                svc.stop()

            print("terminate during a streamed export ...", flush=True)
            svc = ServiceProcess(uri, logs, "terminate", **env).start()
            procs.append(svc)
            async with http.post(f"{svc.url}/api/v1/exports/big.csv") as resp:
                job_id = resp.headers["X-Job-Id"]
                received = 0
                while received < min(5 << 20, rows * 20):
                    received += len(await resp.content.read(1 << 16))
                terminated = await control(http, svc.url, job_id, "terminate")
                at_response = terminated["progress"]["processed"]
                try:
                    while await resp.content.read(1 << 16):
                        pass
                    aborted = False
                except aiohttp.ClientPayloadError:
                    aborted = True
            final = await wait_job(http, svc.url, job_id, done)
            results["stream_aborted_on_terminate"] = aborted
            results["rows_sent_after_terminate"] = final["progress"]["processed"] - at_response
            results["batch_size"] = 1000
    finally:
        for proc in procs:
            proc.stop()
        db.close()

    r = results
    markdown = f"""
Measured by `bench/export_bench.py` on {r["machine"]}; a {r["rows"]:,}-row, 10-column dataset ({r["file_mb"]} MB of CSV).

| measure | result | target |
|---|---|---|
| plain script (cursor, batch_size 1000, csv.writer to a file) | {r["baseline_seconds"]} s | baseline |
| background export job, into GridFS | {r["background_seconds"]} s, **ratio {r["ratio_background"]}** | ≥ 0.9 {ok(r["ratio_background"] >= 0.9)} |
| streamed export, request to last byte | {r["stream_seconds"]} s, **ratio {r["ratio_stream"]}** | ≥ 0.9 {ok(r["ratio_stream"] >= 0.9)} |
| peak RSS, fresh process streaming {small_rows:,} rows | {r["peak_rss_mb_stream_small"]} MB | < 200 MB {ok(r["peak_rss_mb_stream_small"] < 200)} |
| peak RSS, fresh process streaming {r["rows"]:,} rows | {r["peak_rss_mb_stream_big"]} MB | < 200 MB, same as small {ok(r["peak_rss_mb_stream_big"] < 200)} |
| rows the server sent after the terminate response | {r["rows_sent_after_terminate"]} (batch size {r["batch_size"]}); download aborted: {r["stream_aborted_on_terminate"]} | ≤ 1 batch {ok(r["rows_sent_after_terminate"] <= r["batch_size"] and r["stream_aborted_on_terminate"])} |
"""
    write_results("export", results, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.small_rows))
