"""Reading a dataset's records in _id order, a window of one import's rows
at a time.

A record's _id is "org/dataset/job:row" (the row zero-padded), so the rows
``a <= row < b`` of one import are one short range of the primary key: the
_id index serves it on MongoDB and on the patched FerretDB, and sorting what
it returns is a moment's work. One query over the whole dataset sorted by _id
is not: FerretDB sorts the whole match in memory before it sends the first
document (a date-filtered export of 1,000,000 rows waited about 12 minutes
for its first row). Windows grow while they return few documents (a date
filter that matches little) and shrink when they return many, so each holds
about one cursor reply; an empty window asks, by _id alone (a range with a
limit of one, unsorted), whether the import has rows further on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .records import ROW_DIGITS, prefix_range, row_id

FIRST_WINDOW = 1_000


class WindowedReader:
    """A cursor-like reader (``to_list(n)``, ``close()``) of the records matching
    ``query`` under ``prefixes`` (each import's "org/dataset/job:"), in _id
    order, after ``after`` (an _id already read) if given."""

    def __init__(
        self,
        records: Any,
        query: dict[str, Any],
        projection: dict[str, Any],
        prefixes: Iterable[str],
        per_reply: int,
        after: str | None = None,
    ) -> None:
        self.records, self.projection = records, projection
        self.query = {k: v for k, v in query.items() if k != "_id"}
        self.per_reply = max(1, per_reply)
        self.max_window = max(FIRST_WINDOW, self.per_reply) * 64
        self.window = min(FIRST_WINDOW, self.per_reply)
        self.prefixes = sorted(p for p in prefixes if after is None or p + "\U0010ffff" > after)
        self.row = 1
        if after is not None and self.prefixes and after.startswith(self.prefixes[0]):
            self.row = int(after[len(self.prefixes[0]) :][:ROW_DIGITS]) + 1
        self.cursor: Any = None
        self.found = self.size = 0

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        """The next documents (at most ``length``); [] at the end. A window is
        read through a cursor of ``per_reply`` documents a reply, so memory is
        bounded by a reply whatever a window matches."""
        want = length or self.per_reply
        out: list[dict[str, Any]] = []
        while len(out) < want and (self.cursor is not None or self.prefixes):
            if self.cursor is None:
                self._open_window()
                continue
            docs = await self.cursor.to_list(want - len(out))
            if docs:
                out += docs
                self.found += len(docs)
            else:
                await self._close_window()
        return out

    async def close(self) -> None:
        if self.cursor is not None:
            cursor, self.cursor = self.cursor, None
            await cursor.close()

    def _open_window(self) -> None:
        prefix, start, size = self.prefixes[0], self.row, self.window
        bounds = {"$gte": row_id(prefix, start), "$lt": row_id(prefix, start + size)}
        self.cursor = self.records.find(
            {**self.query, "_id": bounds}, self.projection, sort=[("_id", 1)], batch_size=self.per_reply
        )
        self.row, self.found, self.size = start + size, 0, size

    async def _close_window(self) -> None:
        prefix, found, size = self.prefixes[0], self.found, self.size
        await self.close()
        if found > 2 * self.per_reply:
            self.window = max(1, size // 2)
        elif found < self.per_reply // 2:
            self.window = min(self.max_window, size * 2)
        if not found and not await self._more(prefix):
            self.prefixes.pop(0)
            self.row = 1

    async def _more(self, prefix: str) -> bool:
        """Whether the import has rows at or after the next window's start."""
        rest = {"$gte": row_id(prefix, self.row), "$lt": prefix_range(prefix)["$lt"]}
        return await self.records.find_one({"_id": rest}, {"_id": 1}) is not None
