"""Import dry-run benchmark (issue 13). Run: .venv/bin/python bench/dry_run_bench.py [--rows N]

Against one FerretDB and one `python -m service` process:
- three imports of 10,000 rows of the benchmark sheet give the dataset a history;
- the dry run of the same sheet with two columns swapped (its answer, as an example);
- the dry run of the N-row sheet (default 1,000,000), streamed from disk: time,
  the service's peak RSS before and after it, and that nothing was written.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
import time
from pathlib import Path

import aiofiles
import aiohttp
from common import DATA, BenchDatabase, ServiceProcess, data_file, done, machine, peak_rss_mb, upload, wait_job, write_results
from pymongo import AsyncMongoClient

TYPES = "id:int,day:date,amount:decimal,score:int,active:bool"
HISTORY_ROWS = 10_000


def swapped_file(source: Path) -> Path:
    """The sheet with `name` and `email` swapped under an unchanged header."""
    path = DATA / f"{source.stem}-swapped.csv"
    if not path.exists():
        with open(source, newline="") as src, open(path, "w", newline="") as out:
            reader, writer = csv.reader(src), csv.writer(out, lineterminator="\n")
            writer.writerow(next(reader))
            for row in reader:
                row[1], row[2] = row[2], row[1]
                writer.writerow(row)
    return path


async def dry_run(http: aiohttp.ClientSession, url: str, path: Path, **params: str) -> tuple[dict, float]:
    async def chunks():
        async with aiofiles.open(path, "rb") as f:
            while chunk := await f.read(256 * 1024):
                yield chunk

    started = time.perf_counter()
    async with http.post(
        f"{url}/api/v1/jobs/import",
        params={"dataset": "bench", "dry_run": "true", **params},
        data=chunks(),
        headers={"Content-Type": "text/csv"},
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 200, body
    return body, time.perf_counter() - started


async def counts(db) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in sorted(await db.list_collection_names())}


async def main(rows: int) -> None:
    big, small = data_file(rows), data_file(HISTORY_ROWS)
    swapped = swapped_file(small)
    server = BenchDatabase().start()
    uri = server.uri("dryrun")
    client = AsyncMongoClient(uri)
    db = client.get_default_database()
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    r: dict = {"machine": machine(server), "rows": rows, "file_mb": round(big.stat().st_size / 2**20, 1)}
    svc = ServiceProcess(uri, logs, "dryrun", LOG_LEVEL="WARNING").start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            print("history: three imports ...", flush=True)
            for _ in range(3):
                job = await upload(http, svc.url, small, dataset="bench", types=TYPES)
                final = await wait_job(http, svc.url, job["id"], done, interval=0.2)
                assert final["state"] == "completed", final
            print("dry run of the swapped sheet ...", flush=True)
            review, took = await dry_run(http, svc.url, swapped, types=TYPES)
            r["swapped_seconds"] = round(took, 2)
            r["swapped_findings"] = [f["kind"] for f in review["findings"]]
            email = next(c for c in review["columns"] if c["name"] == "email")
            r["swapped_example"] = {
                **review,
                "columns": [email],
                "errors": {**review["errors"], "first": review["errors"]["first"][:1]},
            }
            before = await counts(db)
            r["rss_before_mb"] = round(peak_rss_mb(svc.process.pid), 1)
            print(f"dry run of {rows:,} rows ...", flush=True)
            review, took = await dry_run(http, svc.url, big, types=TYPES)
            r["seconds"] = round(took, 1)
            r["rows_per_second"] = round(rows / took)
            r["rss_after_mb"] = round(peak_rss_mb(svc.process.pid), 1)
            r["rows_read"], r["valid_rows"] = review["rows"], review["valid_rows"]
            r["findings"] = [f["kind"] for f in review["findings"]]
            r["nothing_written"] = await counts(db) == before
            assert review["rows"] == rows, review["rows"]
    finally:
        svc.stop()
        await client.close()
        server.close()

    example = json.dumps(r["swapped_example"], indent=2, default=str)
    markdown = f"""
Measured by `bench/dry_run_bench.py` on {r["machine"]}.

| measure | result |
|---|---|
| dry run of {rows:,} rows ({r["file_mb"]} MB, 10 columns, `types={TYPES}`), streamed | {r["seconds"]} s ({r["rows_per_second"]:,} rows/s); {r["rows_read"]:,} rows read, {r["valid_rows"]:,} valid; findings: {r["findings"] or "none"} |
| peak RSS of the service before → after that dry run | {r["rss_before_mb"]} MB → {r["rss_after_mb"]} MB |
| collections unchanged by the dry run | {r["nothing_written"]} |
| dry run of a {HISTORY_ROWS:,}-row sheet with `name` and `email` swapped, after three imports | {r["swapped_seconds"]} s; findings: {r["swapped_findings"]} |

The swapped sheet's answer (columns cut to `email`, errors to the first):

```json
{example}
```
"""
    write_results("dry_run", r, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.rows))
