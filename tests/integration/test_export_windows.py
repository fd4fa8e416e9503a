"""A filtered export reads its records in windows of one import's _id range,
each sorted by the database in a moment, never as one query over the whole
dataset sorted by _id (FerretDB sorts the whole match before it sends the
first row: a date-filtered export of 1,000,000 rows sent its first row after
about 12 minutes, issue 27)."""

from __future__ import annotations

import threading
from typing import Any

from pymongo import monitoring

from service.app import create_app
from service.store.records import ROW_DIGITS

from ..conftest import SUITE_QUERIES
from ..support.helpers import make_csv, start_import, wait_for_state


class RecordFinds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finds: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "records":
            with self.lock:
                self.finds.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def prefix(bound: str) -> str | None:
    """The import's prefix ("org/dataset/job:") of a row's _id; None for another bound."""
    row = bound[-ROW_DIGITS:]
    return bound[:-ROW_DIGITS] if row.isdigit() and bound[:-ROW_DIGITS].endswith(":") else None


async def test_a_filtered_export_reads_windows_of_one_imports_id_range(db, aiohttp_client, settings):
    finds = RecordFinds()
    client = await aiohttp_client(create_app(settings, command_listeners=[SUITE_QUERIES, finds]))
    for start in (1, 2001):
        job = await start_import(client, make_csv(2000, start=start), dataset="visits", types="id:int,day:date")
        await wait_for_state(client, job["id"], "completed")
    finds.finds.clear()
    resp = await client.post(
        "/api/v1/jobs/export", json={"dataset": "visits", "date_field": "day", "from": "2017-03-01", "to": "2017-05-01"}
    )
    export = await resp.json()
    done = await wait_for_state(client, export["id"], "completed")
    assert done["progress"]["processed"] == sum(1 for i in range(1, 4001) if (i % 12) + 1 in (3, 4))
    sorted_finds = [f for f in finds.finds if f.get("sort")]
    assert sorted_finds
    for find in sorted_finds:
        bounds = find["filter"]["_id"]
        low = bounds.get("$gte") or bounds.get("$gt")
        assert prefix(low) is not None and prefix(low) == prefix(bounds["$lt"]), (
            f"a sorted find over more than one import's rows: {bounds}"
        )
