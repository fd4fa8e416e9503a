"""Every query the service sends must be served by an index on MongoDB.

FerretDB (the test database) answers any query, indexed or not, so nothing in
a test run would show that a query scans a whole collection on MongoDB. This
module makes it show: a PyMongo command listener on the app's database client
records the filter of every find, count, distinct, aggregate, update, delete
and findAndModify the service sends (tests/conftest.py installs it for every
app the suite builds), and ``unserved`` says which filters no index serves.

A filter is served when it constrains the first field of the _id index or of
an index declared in service/store/db.py INDEXES (or a GridFS bucket's): the
database can then walk that index instead of the collection. ``$or`` needs
every branch served; ``$and`` needs one served part.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from pymongo import monitoring

from service.store.db import INDEXES, TTL_FIELDS

FILTERS = {
    "find": "filter",
    "count": "query",
    "distinct": "query",
    "findAndModify": "query",
}

# Indexes of the GridFS buckets (service/store/files.py) besides _id.
BUCKET_INDEXES = {"chunks": [("files_id", 1), ("n", 1)]}

# Filters no index serves, each with the reason it may stay that way. Keys are
# (collection, the filter's shape as `shape` prints it).
# None today: the import rollback's final sweep, once by job_id tag, is an
# _id prefix range since issue 10.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def leading_fields(collection: str) -> set[str]:
    """The fields an index on ``collection`` starts with (``_id`` always)."""
    fields = {"_id"}
    for _, keys in INDEXES.get(collection, []):
        fields.add(keys[0][0])
    if collection in TTL_FIELDS:
        fields.add(TTL_FIELDS[collection])
    for suffix, keys in BUCKET_INDEXES.items():
        if collection.endswith(f".{suffix}"):
            fields.add(keys[0][0])
    return fields


def served(collection: str, query: dict[str, Any]) -> bool:
    leading = leading_fields(collection)

    def ok(q: dict[str, Any]) -> bool:
        if any(key in leading for key in q if not key.startswith("$")):
            return True
        if "$or" in q and all(ok(branch) for branch in q["$or"]):
            return True
        return "$and" in q and any(ok(part) for part in q["$and"])

    return ok(query)


def shape(value: Any) -> Any:
    """The filter with its values blanked, so one query sent a thousand times is
    one entry: operators and field names stay, values become "?"."""
    if isinstance(value, dict):
        return {k: shape(v) if k.startswith("$") or isinstance(v, dict) else "?" for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value if isinstance(v, dict)] or "?"
    return "?"


def _queries(name: str, command: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    collection = command.get(name)
    if not isinstance(collection, str):
        return
    if name in FILTERS:
        yield collection, command.get(FILTERS[name]) or {}
    elif name == "aggregate":
        stages = command.get("pipeline") or []
        first = stages[0] if stages else {}
        yield collection, first.get("$match", {}) if isinstance(first, dict) else {}
    elif name == "update":
        for statement in command.get("updates") or []:
            yield collection, statement.get("q") or {}
    elif name == "delete":
        for statement in command.get("deletes") or []:
            yield collection, statement.get("q") or {}


class QueryRecorder(monitoring.CommandListener):
    """Remembers each distinct (collection, filter shape) and an example of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}
        self.new: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name not in FILTERS and name not in ("aggregate", "update", "delete"):
            return
        for collection, query in _queries(name, event.command):
            key = (collection, json.dumps(shape(query), sort_keys=True))
            with self._lock:
                if key not in self.seen:
                    self.seen[key] = query
                    self.new.append(key)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take_new(self) -> list[tuple[str, str]]:
        with self._lock:
            new, self.new = self.new, []
        return new

    def unserved(self, keys: Iterable[tuple[str, str]]) -> list[str]:
        """One line per filter no index serves: the collection, the filter as
        sent, and the indexes that would have been acceptable."""
        problems = []
        for key in keys:
            collection = key[0]
            if key in EXCEPTIONS or served(collection, self.seen[key]):
                continue
            example = json.dumps(self.seen[key], default=str)
            problems.append(
                f"{collection}: filter {key[1]} (e.g. {example[:300]}) is served by no index; "
                f"indexes there start with {sorted(leading_fields(collection))}. "
                "Declare one in service/store/db.py INDEXES or add an exception with its reason."
            )
        return problems

    def unused_indexes(self) -> list[str]:
        """Declared indexes whose first field no recorded filter constrains."""
        used: dict[str, set[str]] = {}
        for (collection, _), query in self.seen.items():
            used.setdefault(collection, set()).update(_fields(query))
        return [
            f"{collection}.{name} ({keys[0][0]})"
            for collection, indexes in INDEXES.items()
            for name, keys in indexes
            if keys[0][0] not in used.get(collection, set())
        ]


def _fields(query: dict[str, Any]) -> set[str]:
    fields = {k for k in query if not k.startswith("$")}
    for op in ("$or", "$and"):
        for branch in query.get(op, []):
            fields |= _fields(branch)
    return fields
