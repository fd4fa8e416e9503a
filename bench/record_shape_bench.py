"""Which part of the record document does FerretDB pay for, and does sending
inserts in parallel help? Run: .venv/bin/python bench/record_shape_bench.py

Inserts the 100,000-row benchmark CSV in several document shapes (insert_many
of 1,000 into fresh collections, two rounds), then the service's document with
each batch split into 2 and 4 concurrent insert_many calls, and writes the
rows per second into the README (the bench:record-shape block).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import time

from common import BenchDatabase, data_file, machine, write_results
from pymongo import AsyncMongoClient

JOB = "6b02a8d2aa5dd2edf18ca6a1"
ROUNDS = 2


def shapes(header: list[str]) -> dict:
    def flat(i, row, now):
        return dict(zip(header, row))

    def tags(i, row, now):
        return {"org_id": "default", "dataset": "people", "job_id": JOB, "row": i, "created_at": now}

    def service(i, row, now):
        return {"_id": f"default/people/{JOB}:{i:010d}", **tags(i, row, now), "data": flat(i, row, now)}

    return {
        "flat (the issue's plain script)": (flat, 1),
        "flat + the service's string _id": (
            lambda i, row, now: {"_id": f"default/people/{JOB}:{i:010d}", **flat(i, row, now)},
            1,
        ),
        "columns nested in data": (lambda i, row, now: {"data": flat(i, row, now)}, 1),
        "flat + the five tags": (lambda i, row, now: {**tags(i, row, now), **flat(i, row, now)}, 1),
        "the service's document": (service, 1),
        "the service's document, integer _id": (
            lambda i, row, now: {"_id": i, **tags(i, row, now), "data": flat(i, row, now)},
            1,
        ),
        "the service's document, 2 inserts in flight": (service, 2),
        "the service's document, 4 inserts in flight": (service, 4),
    }


async def insert_all(collection, data, make, in_flight: int) -> float:
    """Rows per second inserting ``data`` in batches of 1,000, each batch sent as
    ``in_flight`` concurrent insert_many calls."""
    now = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    for start in range(0, len(data), 1000):
        docs = [make(start + k + 1, row, now) for k, row in enumerate(data[start : start + 1000])]
        step = -(-len(docs) // in_flight)
        await asyncio.gather(*(collection.insert_many(docs[i : i + step], ordered=False) for i in range(0, len(docs), step)))
    return len(data) / (time.perf_counter() - started)


async def main() -> None:
    with open(data_file(100_000)) as f:
        reader = csv.reader(f)
        header = next(reader)
        data = list(reader)
    server = BenchDatabase().start()
    client = AsyncMongoClient(server.uri("shape"))
    db = client.get_default_database()
    rates: dict[str, list[float]] = {}
    described = machine(server)
    try:
        for rnd in range(ROUNDS):
            for n, (name, (make, in_flight)) in enumerate(shapes(header).items()):
                rate = await insert_all(db[f"shape{n}_{rnd}"], data, make, in_flight)
                rates.setdefault(name, []).append(rate)
                print(f"round {rnd + 1}  {name:45s} {rate:8.0f} rows/s", flush=True)
    finally:
        await client.close()
        server.close()

    flat = sum(rates["flat (the issue's plain script)"]) / ROUNDS
    lines = [
        f"| {name} | {' / '.join(f'{r:,.0f}' for r in values)} | {sum(values) / ROUNDS / flat:.2f} |"
        for name, values in rates.items()
    ]
    markdown = (
        f"Measured by `bench/record_shape_bench.py` on {described}; {len(data):,} rows of the benchmark CSV, "
        f"insert_many of 1,000, {ROUNDS} rounds.\n\n"
        "| document shape | rows/s (each round) | vs flat |\n|---|---|---|\n" + "\n".join(lines)
    )
    write_results("record-shape", {"machine": described, "rows": len(data), "rows_per_second": rates}, markdown)
    print(markdown)


if __name__ == "__main__":
    asyncio.run(main())
