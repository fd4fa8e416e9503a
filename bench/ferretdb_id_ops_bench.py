"""What one operation by _id costs FerretDB as its collection grows.
Run: .venv/bin/python bench/ferretdb_id_ops_bench.py [--docs N]

FerretDB 1.24's SQLite backend indexes _id under the expression
_ferretdb_sjson->"_id" but filters on _ferretdb_sjson->'$._id', so SQLite never
uses the index: unpatched, each operation below scans the table. The project's
patch (scripts/ferretdb/id_pushdown.go) filters on the index's expression, so
with the binary scripts/build-ferretdb builds each is an index lookup or range,
as on MongoDB. This measures them, for the README's FerretDB section (the
bench:ferretdb-ops block).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import BenchDatabase, machine, write_results
from pymongo import AsyncMongoClient

REPEAT = 10


def key(i: int) -> str:
    return f"default/people/6b02a8d2aa5dd2edf18ca6a1:{i:010d}"


async def per_command(run, count: int) -> float:
    """Milliseconds per call of ``run(k)`` for k in range(count)."""
    started = time.perf_counter()
    for k in range(count):
        await run(k)
    return (time.perf_counter() - started) * 1000 / count


async def main(docs: int) -> None:
    server = BenchDatabase().start()
    described = machine(server)
    client = AsyncMongoClient(server.uri("ops"))
    records = client.get_default_database()["records"]
    try:
        for start in range(0, docs, 5000):
            await records.insert_many(
                [{"_id": key(i), "job_id": "j", "row": i, "data": {"name": f"Person {i}"}} for i in range(start, start + 5000)]
            )
        last = docs - 1
        # Each operation works on ids near the end of the table (where a scan
        # finds them last), and on ids it alone touches.
        ms = {
            "find_one by _id, a row near the start": await per_command(lambda k: records.find_one({"_id": key(k)}), REPEAT),
            "find_one by _id, a row near the end": await per_command(lambda k: records.find_one({"_id": key(last - k)}), REPEAT),
            "update_one by _id": await per_command(
                lambda k: records.update_one({"_id": key(last - k)}, {"$set": {"row": -1}}), REPEAT
            ),
            "replace_one by _id": await per_command(
                lambda k: records.replace_one({"_id": key(last - 20 - k)}, {"row": -2}), REPEAT
            ),
            "delete_one by _id": await per_command(lambda k: records.delete_one({"_id": key(last - 40 - k)}), REPEAT),
            "delete_many, _id $in 1,000 ids": await per_command(
                lambda k: records.delete_many({"_id": {"$in": [key(i) for i in range(last - 2000, last - 1000)]}}), 1
            ),
            "delete_many, _id range of 1,000": await per_command(
                lambda k: records.delete_many({"_id": {"$gte": key(last - 4000), "$lt": key(last - 3000)}}), 1
            ),
        }
    finally:
        await client.close()
        server.close()
    lines = [f"| {name} | {value:,.1f} ms |" for name, value in ms.items()]
    markdown = (
        f"Measured by `bench/ferretdb_id_ops_bench.py` on {described}; one command at a time against a "
        f"collection of {docs:,} documents.\n\n| one command | time |\n|---|---|\n" + "\n".join(lines)
    )
    write_results("ferretdb-ops", {"machine": described, "docs": docs, "ms_per_command": ms}, markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().docs))
