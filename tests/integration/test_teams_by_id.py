"""A teams job and its rollback find the users and teams they work on by _id
only (an equality, an $in, or a range bounded on both sides): FerretDB serves
only _id conditions from an index and scans a collection for anything else,
so a rollback that asked for "this job's users after X" read the whole of
`users` once per chunk (issue 27: 800 teams took 35 minutes to roll back)."""

from __future__ import annotations

import threading
from typing import Any

from pymongo import monitoring

from service.app import create_app

from ..conftest import SUITE_QUERIES
from ..support.helpers import control, get_job, post_teams, sheet, snapshot, team_rows, wait_for, wait_for_state
from .test_teams import seed_existing

WATCHED = ("users", "teams")


class Filters(monitoring.CommandListener):
    """Every filter sent to ``users`` and ``teams``, with its command."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command, name = event.command, event.command_name
        collection = command.get(name)
        if collection not in WATCHED:
            return
        filters = []
        if name in ("find", "count", "findAndModify"):
            filters = [command.get("filter") or command.get("query") or {}]
        elif name == "update":
            filters = [u.get("q") or {} for u in command.get("updates") or []]
        elif name == "delete":
            filters = [d.get("q") or {} for d in command.get("deletes") or []]
        elif name == "aggregate":
            filters = [((command.get("pipeline") or [{}])[0]).get("$match", {})]
        with self.lock:
            self.sent += [(name, collection, f) for f in filters]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def by_id(query: dict[str, Any]) -> bool:
    condition = query.get("_id")
    if condition is None:
        return False
    if not isinstance(condition, dict):
        return True
    if "$in" in condition or "$eq" in condition:
        return True
    return bool({"$gt", "$gte"} & set(condition)) and bool({"$lt", "$lte"} & set(condition))


async def test_a_teams_job_terminated_midway_and_rolled_back_reads_users_and_teams_by_id_only(db, aiohttp_client, settings):
    filters = Filters()
    client = await aiohttp_client(create_app(settings, command_listeners=[SUITE_QUERIES, filters]))
    await seed_existing(db)
    before = await snapshot(db)
    job = await post_teams(client, sheet(team_rows(600)), batch_size=50)
    await wait_for(client, job["id"], lambda j: j["progress"].get("processed", 0) >= 200, what="200 rows")
    await control(client, job["id"], "terminate")
    done = await wait_for_state(client, job["id"], "terminated", timeout=120)
    assert done["progress"]["teams_deleted"] == done["progress"]["teams_created"] > 0
    assert await snapshot(db) == before
    scans = sorted({f"{name} {collection} {sorted(query)}" for name, collection, query in filters.sent if not by_id(query)})
    assert scans == [], "filters FerretDB cannot serve from the _id index"
    assert (await get_job(client, job["id"]))["state"] == "terminated"
