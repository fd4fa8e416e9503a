"""Memory is bounded by bytes, not rows: wide rows at batch_size=10000 travel in
batches of BATCH_MAX_BYTES, and an export's cursor replies stay near
REPLY_MAX_BYTES, as the database sees the commands."""

from __future__ import annotations

import csv
import io
from collections import Counter

from bson import encode
from pymongo import monitoring

from service.app import create_app
from service.jobs.kinds.exports import REPLY_MAX_BYTES

from ..conftest import SUITE_QUERIES
from ..support.helpers import post_teams, sheet, start_import, wait_for_state

ROW_BYTES = 100_000
BUDGET = 512 * 1024


def wide_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "blob"])
    for i in range(1, rows + 1):
        writer.writerow([i, f"{i:06d}" + "x" * (ROW_BYTES - 6)])
    return out.getvalue().encode()


class Traffic(monitoring.CommandListener):
    """Sizes of what went to and came from the database, by command."""

    def __init__(self) -> None:
        self.inserts: list[tuple[int, int]] = []  # (documents, bytes) per insert into records
        self.replies: list[tuple[int, int]] = []  # (documents, bytes) per find/getMore reply from records
        self.requested: list[int] = []  # batchSize asked of records per find/getMore
        self._reading: set[int] = set()
        self.checkpoints: Counter[str] = Counter()  # progress writes by job

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name == "update" and command.get("update") == "job_progress":
            for statement in command.get("updates", []):
                self.checkpoints[statement["q"].get("_id")] += 1
        if event.command_name == "insert" and command.get("insert") == "records":
            docs = command.get("documents", [])
            self.inserts.append((len(docs), sum(len(getattr(d, "raw", b"")) or len(encode(d)) for d in docs)))
        elif command.get("find") == "records" or command.get("collection") == "records" and event.command_name == "getMore":
            self._reading.add(event.request_id)
            # (A find of one document, limit 1, is an existence check: it asks no batch size.)
            self.requested.append(command.get("batchSize", 0 if command.get("limit") != 1 else 1))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self._reading:
            self._reading.discard(event.request_id)
            cursor = event.reply.get("cursor", {})
            batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
            self.replies.append((len(batch), len(encode(event.reply))))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._reading.discard(event.request_id)


async def test_wide_rows_are_imported_and_exported_in_batches_bounded_by_bytes(aiohttp_client, settings):
    traffic = Traffic()
    app = create_app(settings.replace(batch_max_bytes=BUDGET), command_listeners=[SUITE_QUERIES, traffic])
    client = await aiohttp_client(app)
    rows = 100
    body = wide_csv(rows)

    job = await start_import(client, body, dataset="wide", batch_size=10_000)
    done = await wait_for_state(client, job["id"], "completed", "failed", timeout=120)
    assert done["state"] == "completed" and done["progress"]["inserted"] == rows

    sizes = [n for n, _ in traffic.inserts]
    assert sum(sizes) == rows
    # A batch closes with the record that reaches the budget: 6 rows of 100 KB.
    assert max(sizes) == BUDGET // ROW_BYTES + 1, sizes
    assert max(b for _, b in traffic.inserts) < BUDGET + 2 * ROW_BYTES

    resp = await client.post("/api/v1/jobs/export", json={"dataset": "wide", "batch_size": 10_000, "neutralize_formulas": False})
    assert resp.status == 202, await resp.text()
    export = await resp.json()
    finished = await wait_for_state(client, export["id"], "completed", "failed", timeout=120)
    assert finished["state"] == "completed"
    result = await client.get(f"/api/v1/jobs/{export['id']}/result")
    assert (await result.read()).replace(b"\r\n", b"\n") == body

    # The cursor asked for about REPLY_MAX_BYTES a reply, not 10,000 rows (1 GB),
    # and every reply the database sent stayed within that.
    per_reply = REPLY_MAX_BYTES // ROW_BYTES
    assert traffic.requested and all(0 < n <= per_reply for n in traffic.requested), traffic.requested
    assert sum(n for n, _ in traffic.replies) == rows
    assert max(b for _, b in traffic.replies) <= REPLY_MAX_BYTES + ROW_BYTES

    # The export checkpointed every ~BUDGET bytes of CSV, not once for 10,000 rows.
    assert finished["progress"]["processed"] == rows
    assert traffic.checkpoints[export["id"]] >= rows // (BUDGET // ROW_BYTES + 1), traffic.checkpoints


async def test_a_teams_row_with_ten_thousand_members_is_a_row_error_and_the_rest_is_created(client, db):
    huge = ";".join(f"202-555-{i:04d}" for i in range(10_000))
    body = sheet(
        [
            ["Team A", "Ann", "(201) 555-0101", "202-555-0001"],
            ["Team B", "Bob", "(201) 555-0102", huge],
            ["Team C", "Cat", "(201) 555-0103", ""],
        ]
    )
    job = await post_teams(client, body)
    done = await wait_for_state(client, job["id"], "completed", "failed", timeout=60)
    assert done["state"] == "completed"
    assert done["progress"]["teams_created"] == 2
    assert done["progress"]["failed_by_kind"] == {"too_many_members": 1}
    assert done["errors"][0]["line"] == 3 and "members cell" in done["errors"][0]["message"]
    assert await db.teams.count_documents({"name": "Team B"}) == 0
