"""Undo benchmark (issue 25). Run: .venv/bin/python bench/undo_bench.py [--rows N] [--teams N]

Against one FerretDB (or MONGODB_URI), with a real service process:
- an import of N rows (default 100,000) to completion, then its undo: rows/s
  forward (started -> finished) next to rows/s undone (undo response ->
  ``undone``), and whether exactly its rows are gone (another import of the
  same dataset stays);
- a teams job of N teams (default 1,000, two members each) to completion, then
  its undo: teams/s both ways, and whether ``teams`` and ``users`` equal the
  snapshot taken before the job.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from common import BenchDatabase, ServiceProcess, data_file, done, machine, seconds_between, upload, wait_job, write_results
from pymongo import AsyncMongoClient

from service.store.records import dataset_prefix, prefix_range
from tests.support.helpers import sheet, team_rows


def ended(j: dict) -> bool:
    """done(), with the undo's end state."""
    return done(j) or j["state"] == "undone"


async def undo(http, url: str, job_id: str) -> dict:
    async with http.post(f"{url}/api/v1/jobs/{job_id}/undo", json={"reason": "benchmark"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body


async def snapshot(db) -> tuple[list, list]:
    return await db["teams"].find().sort("_id", 1).to_list(None), await db["users"].find().sort("_id", 1).to_list(None)


async def main(rows: int, teams: int) -> None:
    server = BenchDatabase().start()
    uri = server.uri("undo")
    client = AsyncMongoClient(uri)
    db = client.get_default_database()
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    r: dict = {"machine": machine(server), "rows": rows, "teams": teams}
    svc = ServiceProcess(uri, logs, "undo", LOG_LEVEL="WARNING").start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            print(f"import of {rows:,} rows, then its undo ...", flush=True)
            small = await upload(http, svc.url, data_file(1000), dataset="bench")
            await wait_job(http, svc.url, small["id"], done, interval=0.2)
            job = await upload(http, svc.url, data_file(rows), dataset="bench")
            final = await wait_job(http, svc.url, job["id"], done, interval=0.2)
            assert final["state"] == "completed", final
            r["import_seconds"] = round(seconds_between(final["started_at"], final["finished_at"]), 2)
            started = time.perf_counter()
            await undo(http, svc.url, job["id"])
            final = await wait_job(http, svc.url, job["id"], ended, interval=0.2)
            assert final["state"] == "undone", final
            r["import_undo_seconds"] = round(time.perf_counter() - started, 2)
            r["rows_undone"] = final["progress"]["rolled_back"]
            left = await db["records"].count_documents({"_id": prefix_range(dataset_prefix("default", "bench"))})
            r["only_its_rows_gone"] = left == 1000 and r["rows_undone"] == rows

            print(f"teams job of {teams:,} teams, then its undo ...", flush=True)
            before = await snapshot(db)
            async with http.post(
                f"{svc.url}/api/v1/jobs/teams", data=sheet(team_rows(teams)), headers={"Content-Type": "text/csv"}
            ) as resp:
                job = await resp.json()
                assert resp.status == 202, job
            final = await wait_job(http, svc.url, job["id"], done, interval=0.2)
            assert final["state"] == "completed", final
            r["teams_seconds"] = round(seconds_between(final["started_at"], final["finished_at"]), 2)
            started = time.perf_counter()
            await undo(http, svc.url, job["id"])
            final = await wait_job(http, svc.url, job["id"], ended, interval=0.2)
            assert final["state"] == "undone", final
            r["teams_undo_seconds"] = round(time.perf_counter() - started, 2)
            r["teams_undone"] = final["progress"]["teams_deleted"]
            r["identical_after_undo"] = await snapshot(db) == before
    finally:
        svc.stop()
        await client.close()
        server.close()

    def rate(n: int, seconds: float, what: str) -> str:
        return f"{round(n / seconds):,} {what}/s" if seconds else "–"

    markdown = f"""
Measured by `bench/undo_bench.py` on {r["machine"]}: an import of {rows:,} rows and a teams job of {teams:,} teams (2 members each), each to completion and then undone (undo response → `undone`).

| job | forward | undo | exact |
|---|---|---|---|
| import, {rows:,} rows | {r["import_seconds"]} s ({rate(rows, r["import_seconds"], "rows")}) | {r["import_undo_seconds"]} s ({rate(r["rows_undone"], r["import_undo_seconds"], "rows")}) | only its rows gone, the dataset's other import kept: {r["only_its_rows_gone"]} |
| teams, {teams:,} teams | {r["teams_seconds"]} s ({rate(teams, r["teams_seconds"], "teams")}) | {r["teams_undo_seconds"]} s ({rate(r["teams_undone"], r["teams_undo_seconds"], "teams")}) | `teams` and `users` equal the snapshot before the job: {r["identical_after_undo"]} |

An undo is the terminate's rollback. An import's undo deletes `_id` ranges
about as fast as it inserted them; a teams job's undo compensates user by
user (a few single-document writes each, so other writers' changes survive)
where the forward job inserted its new users in bulk, and on FerretDB every
one of those writes scans its collection (see below); on MongoDB each is a
single-document operation on the primary key.
"""
    write_results("undo", r, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--teams", type=int, default=1_000)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.teams))
