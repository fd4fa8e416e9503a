"""Which part of the record document does FerretDB pay for?
Run: .venv/bin/python bench/record_shape_bench.py

Inserts the 100,000-row benchmark CSV in several document shapes (insert_many
of 1,000 into fresh collections, two rounds) and prints rows per second. The
README quotes the numbers where it explains the import ratio.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import time

from pymongo import AsyncMongoClient

from common import DevDatabase, data_file, with_database

JOB = "6b02a8d2aa5dd2edf18ca6a1"


def shapes(header: list[str]) -> dict:
    def flat(i, row, now):
        return dict(zip(header, row))

    def tags(i, row, now):
        return {"org_id": "default", "dataset": "people", "job_id": JOB, "row": i, "created_at": now}

    return {
        "flat (the issue's plain script)": flat,
        "flat + the service's string _id": lambda i, row, now: {"_id": f"default/people/{JOB}:{i:010d}", **flat(i, row, now)},
        "columns nested in data": lambda i, row, now: {"data": flat(i, row, now)},
        "flat + the five tags": lambda i, row, now: {**tags(i, row, now), **flat(i, row, now)},
        "the service's document": lambda i, row, now: {
            "_id": f"default/people/{JOB}:{i:010d}",
            **tags(i, row, now),
            "data": flat(i, row, now),
        },
        "the service's document, integer _id": lambda i, row, now: {"_id": i, **tags(i, row, now), "data": flat(i, row, now)},
    }


async def main() -> None:
    with open(data_file(100_000)) as f:
        reader = csv.reader(f)
        header = next(reader)
        data = list(reader)
    server = DevDatabase()
    server.start()
    client = AsyncMongoClient(with_database(server.uri, "shape"))
    db = client.get_default_database()
    try:
        for rnd in range(2):
            for n, (name, make) in enumerate(shapes(header).items()):
                collection = db[f"shape{n}_{rnd}"]
                now = dt.datetime.now(dt.timezone.utc)
                started = time.perf_counter()
                for start in range(0, len(data), 1000):
                    batch = data[start : start + 1000]
                    await collection.insert_many([make(start + k + 1, row, now) for k, row in enumerate(batch)])
                print(f"round {rnd + 1}  {name:40s} {len(data) / (time.perf_counter() - started):8.0f} rows/s", flush=True)
    finally:
        await client.close()
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
