"""Teams benchmark (issue 4's scenario). Run: .venv/bin/python bench/teams_bench.py [--rows N]

Against one FerretDB, in one run, with N managers already in `users`:
- the dry run of the sheet whose manager_phone column slid ten rows (its
  shift verdict and time), and of the correct sheet;
- the shifted sheet started as a job by mistake, terminated half-way: time
  from the terminate response to `terminated`, and whether `teams` and
  `users` equal the snapshot taken before;
- the correct sheet as a job, to completion;
- that job undone (the same rollback as a terminate, of all 10,000 teams).
For the jobs and rollbacks it also records the longest time the job's
progress stood still (issue 27: it moved per 500 users, every 17 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from common import (
    BenchDatabase,
    ServiceProcess,
    control,
    done,
    machine,
    peak_rss_mb,
    seconds_between,
    wait_job,
    write_results,
)
from pymongo import AsyncMongoClient

from service.store.teams import user_id
from tests.support.helpers import manager_phone, sheet, shift_down, team_rows


async def post(http, url: str, body: bytes, **params) -> tuple[int, dict, float]:
    started = time.perf_counter()
    async with http.post(f"{url}/api/v1/jobs/teams", params=params, data=body, headers={"Content-Type": "text/csv"}) as resp:
        payload = await resp.json()
        return resp.status, payload, time.perf_counter() - started


async def watch(http, url: str, job_id: str, predicate) -> tuple[dict, float]:
    """Polls the job until ``predicate`` holds; returns it and the longest time
    its progress stood still meanwhile."""
    last, since, still = None, time.perf_counter(), 0.0
    while True:
        current = await wait_job(http, url, job_id, lambda j: True)
        now = time.perf_counter()
        progress = {k: v for k, v in current["progress"].items() if k not in ("rows_per_second",)}
        if progress != last:
            last, since = progress, now
        still = max(still, now - since)
        if predicate(current):
            return current, round(still, 1)
        await asyncio.sleep(0.2)


async def snapshot(db) -> tuple[list, list]:
    return await db["teams"].find().sort("_id", 1).to_list(None), await db["users"].find().sort("_id", 1).to_list(None)


async def main(rows: int) -> None:
    server = BenchDatabase().start()
    uri = server.uri("teams")
    client = AsyncMongoClient(uri)
    db = client.get_default_database()
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    r: dict = {"machine": machine(server), "rows": rows}
    svc = ServiceProcess(uri, logs, "teams", LOG_LEVEL="WARNING").start()
    try:
        await db["users"].insert_many(
            [
                {
                    "_id": user_id("default", manager_phone(i)),
                    "org_id": "default",
                    "phone": manager_phone(i),
                    "name": f"Manager {i}",
                }
                for i in range(1, rows + 1)
            ]
        )
        correct = team_rows(rows)
        shifted = shift_down(correct, column=2, by=10)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            print("dry runs ...", flush=True)
            status, review, took = await post(http, svc.url, sheet(shifted), dry_run="true")
            assert status == 200, review
            r["dry_run_shifted_seconds"] = round(took, 2)
            r["shift"] = review["shift"]
            r["dry_run_shifted_example"] = {
                **review,
                "preview": [review["preview"][0], review["preview"][10]],
                "errors": {**review["errors"], "first": review["errors"]["first"][:1]},
                "warnings": {**review["warnings"], "first": review["warnings"]["first"][:1]},
            }
            r["shift_warnings"] = review["warnings"]["by_kind"]
            status, review, took = await post(http, svc.url, sheet(correct), dry_run="true")
            assert status == 200 and review["warnings"]["count"] == 0 and review["errors"]["count"] == 0, review
            r["dry_run_correct_seconds"] = round(took, 2)

            print("the shifted sheet as a job, terminated half-way ...", flush=True)
            before = await snapshot(db)
            status, job, _ = await post(http, svc.url, sheet(shifted))
            assert status == 202, job
            await wait_job(http, svc.url, job["id"], lambda j: j["progress"].get("processed", 0) >= rows // 2, interval=0.2)
            started = time.perf_counter()
            terminating = await control(http, svc.url, job["id"], "terminate")
            final, r["rollback_longest_still_seconds"] = await watch(http, svc.url, job["id"], done)
            r["rollback_seconds"] = round(time.perf_counter() - started, 2)
            r["rolled_back_teams"] = final["progress"]["teams_deleted"]
            r["processed_at_terminate"] = terminating["progress"]["processed"]
            r["identical_after_rollback"] = await snapshot(db) == before

            print("the correct sheet as a job ...", flush=True)
            status, job, _ = await post(http, svc.url, sheet(correct))
            final, r["job_longest_still_seconds"] = await watch(http, svc.url, job["id"], done)
            assert final["state"] == "completed", final
            r["job_seconds"] = round(seconds_between(final["started_at"], final["finished_at"]), 2)
            r["teams_created"] = final["progress"]["teams_created"]

            print("that job undone ...", flush=True)
            before_undo = time.perf_counter()
            await control(http, svc.url, job["id"], "undo")
            final, r["undo_longest_still_seconds"] = await watch(
                http, svc.url, job["id"], lambda j: j["state"] in ("undone", "failed", "terminated")
            )
            assert final["state"] == "undone", final
            r["undo_seconds"] = round(time.perf_counter() - before_undo, 2)
            r["undo_teams_deleted"] = final["progress"]["teams_deleted"]
            r["peak_rss_mb"] = round(peak_rss_mb(svc.process.pid), 1)
    finally:
        svc.stop()
        await client.close()
        server.close()

    markdown = f"""
Measured by `bench/teams_bench.py` on {r["machine"]}; {rows:,} teams (2 members each) whose {rows:,} managers already exist.

| measure | result |
|---|---|
| dry run of the sheet whose phones slid 10 rows | {r["dry_run_shifted_seconds"]} s; shift: {r["shift"].get("direction")} by {r["shift"].get("rows")} rows; warnings {r["shift_warnings"]} |
| dry run of the correct sheet | {r["dry_run_correct_seconds"]} s, no warnings |
| the shifted sheet started by mistake, terminated after {r["processed_at_terminate"]:,} rows: terminate → `terminated` | {r["rollback_seconds"]} s ({r["rolled_back_teams"]:,} teams deleted, their users restored or deleted: {round(r["rolled_back_teams"] / r["rollback_seconds"])} teams/s); progress stood still at most {r["rollback_longest_still_seconds"]} s |
| `teams` and `users` identical to the snapshot after the rollback | {r["identical_after_rollback"]} |
| the correct sheet as a job, started → finished | {r["job_seconds"]} s ({round(rows / r["job_seconds"])} rows/s); progress stood still at most {r["job_longest_still_seconds"]} s |
| that job undone (all {r["undo_teams_deleted"]:,} teams): undo → `undone` | {r["undo_seconds"]} s ({round(r["undo_teams_deleted"] / r["undo_seconds"])} teams/s); progress stood still at most {r["undo_longest_still_seconds"]} s |
| peak RSS of the service over the whole run | {r["peak_rss_mb"]} MB |

Every read and write of a teams job and of its rollback names its documents
by `_id` (the rollback walks the job's list of what it created), which the
patched FerretDB serves from its `_id` index as MongoDB does
(`tests/integration/test_teams_by_id.py` checks the filters). The machine was
shared with other work (other engineers' test runs and benchmarks) while this
ran, so these times are upper bounds.
"""
    write_results("teams", r, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.rows))
