"""What an export's resumable checkpoint costs (issue 22, "Exports resume").
Run: .venv/bin/python bench/export_resume_bench.py [--rows N] [--rounds R]

A background export makes its file durable up to its end (its short last
chunk rewritten, up to 255 KB) and records its position every
DURABLE_SECONDS. This measures, on one FerretDB, in one process:
- one sync of a short last chunk, by its size (replace_one, upsert);
- the background export of N rows (the challenge's 100,000) end to end with
  the position taken at every batch (0.25 s), every 2 s (the default) and
  never (the export as it was before it could resume), rounds interleaved;
  with the time spent in syncs and their count.
Results go to bench/results/export-resume.json and are printed as markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from aiohttp.test_utils import TestClient, TestServer
from common import RESULTS, BenchDatabase, data_file, machine, seconds_between

from service.app import create_app
from service.jobs import fence
from service.jobs.kinds import exports
from service.settings import MongoSettings, Settings
from service.store.db import Database
from service.store.files import CHUNK_BYTES, Bucket

SETTINGS = {"every batch (0.25 s)": 0.0, "every 2 s (default)": 2.0, "never (restart from the start)": 1e9}


async def sync_cost(uri: str) -> dict[str, float]:
    db = Database.connect(MongoSettings(uri=uri, database="resume_sync"), timeout_seconds=None)
    bucket = Bucket(db.db, "b")
    await bucket.ensure_indexes()
    data, out = os.urandom(CHUNK_BYTES), {}
    for kb in (16, 64, 128, 254):
        times = []
        for i in range(15):
            started = time.perf_counter()
            doc = {"files_id": "f", "n": i % 3, "data": data[: kb * 1024]}
            await bucket.chunks.replace_one({"files_id": "f", "n": i % 3}, doc, upsert=True)
            times.append(time.perf_counter() - started)
        out[f"{kb} KB"] = round(statistics.median(times) * 1000, 1)
    await db.close()
    return out


async def export_runs(uri: str, rows: int, rounds: int) -> dict[str, dict[str, float]]:
    settings = Settings(mongo=MongoSettings(uri=uri, database="resume_export"), auth_disabled=True, job_workers=1)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    syncs: list[float] = []
    real_sync = fence.FencedWriter.sync

    async def timed_sync(self: fence.FencedWriter) -> int:
        started = time.perf_counter()
        try:
            return await real_sync(self)
        finally:
            syncs.append(time.perf_counter() - started)

    fence.FencedWriter.sync = timed_sync  # type: ignore[method-assign]
    try:
        with open(data_file(rows), "rb") as body:
            resp = await client.post(
                "/api/v1/jobs/import", params={"dataset": "bench"}, data=body, headers={"Content-Type": "text/csv"}
            )
        imported = await resp.json()
        await wait(client, imported["id"])
        results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in SETTINGS}
        for _ in range(rounds):
            for name, seconds in SETTINGS.items():
                exports.DURABLE_SECONDS = seconds
                syncs.clear()
                job = await (await client.post("/api/v1/jobs/export", json={"dataset": "bench"})).json()
                done = await wait(client, job["id"])
                results[name].append((seconds_between(done["started_at"], done["finished_at"]), len(syncs), sum(syncs)))
        return {
            name: {
                "seconds_median": round(statistics.median(r[0] for r in runs), 2),
                "seconds_all": [round(r[0], 2) for r in runs],
                "syncs_median": statistics.median(r[1] for r in runs),
                "sync_seconds_median": round(statistics.median(r[2] for r in runs), 2),
            }
            for name, runs in results.items()
        }
    finally:
        fence.FencedWriter.sync = real_sync  # type: ignore[method-assign]
        await client.close()


async def wait(client: TestClient, job_id: str) -> dict:
    while True:
        job = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        if job["state"] in ("completed", "failed", "terminated"):
            assert job["state"] == "completed", job
            return job
        await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    database = BenchDatabase().start()
    try:
        results = {
            "machine": machine(database),
            "load_average": os.getloadavg()[0],
            "rows": args.rows,
            "sync_ms_by_short_chunk": asyncio.run(sync_cost(database.uri("resume_sync"))),
            "export": asyncio.run(export_runs(database.uri("resume_export"), args.rows, args.rounds)),
        }
    finally:
        database.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export-resume.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Export resume checkpoints, {args.rows:,} rows, {results['machine']}, load average {results['load_average']:.1f}:",
        "",
        "| position taken | export (median s) | syncs | time in syncs (s) |",
        "|---|---|---|---|",
    ]
    for name, r in results["export"].items():
        lines.append(
            f"| {name} | {r['seconds_median']} ({', '.join(map(str, r['seconds_all']))}) | {r['syncs_median']} | {r['sync_seconds_median']} |"
        )
    lines += [
        "",
        "One sync of a short last chunk (median ms): "
        + ", ".join(f"{k}: {v}" for k, v in results["sync_ms_by_short_chunk"].items()),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
