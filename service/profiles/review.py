"""Reading a CSV without writing it: row errors by kind, column profiles,
inferred types and requested-type checks. Shared by the import dry run, the
import guard, ``types=auto`` and (the error tally) the teams dry run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ..csvio.records import Position, Record, RecordReader
from ..csvio.rows import RowTyper
from ..csvio.schema import converter
from .findings import compare_header, findings
from .profile import TableProfile

SAMPLE = 100  # row errors listed in full; all are counted
FIRST_ROWS_BYTES = 16 * 1024 * 1024  # the first rows end here too, however few (a dry run holds them)
CHECK_EXAMPLE_CHARS = 40


class ErrorTally:
    """Row errors counted by kind, the first SAMPLE kept."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        self.first: list[dict[str, Any]] = []

    def add(self, error: dict[str, Any]) -> None:
        self.by_kind[error["kind"]] += 1
        if len(self.first) < SAMPLE:
            self.first.append(error)

    def as_dict(self) -> dict[str, Any]:
        return {"count": sum(self.by_kind.values()), "by_kind": dict(self.by_kind), "first": self.first}


class TypeCheck:
    """How many of a column's values its requested type reads, per typed column."""

    def __init__(self, columns: list[str], specs: dict[str, str], null_values: list[str]) -> None:
        self.nulls = frozenset(null_values)
        typed = {c: s for c, s in specs.items() if s != "string"}
        self.checks = [(i, c, typed[c], converter(typed[c])) for i, c in enumerate(columns) if c in typed]
        self.counts: dict[str, dict[str, Any]] = {
            c: {"spec": spec, "checked": 0, "parsed": 0, "example": None} for _, c, spec, _ in self.checks
        }

    def add(self, fields: list[str]) -> None:
        for index, column, _, convert in self.checks:
            value = fields[index].strip()
            if not value or value in self.nulls:
                continue
            count = self.counts[column]
            count["checked"] += 1
            try:
                convert(value)
            except ValueError:
                if count["example"] is None:
                    count["example"] = value[:CHECK_EXAMPLE_CHARS]
            else:
                count["parsed"] += 1


class FirstRows:
    """The first ``limit`` well-formed rows of a file: their profile, the type
    each column calls for, and how the requested types read them."""

    def __init__(self, columns: list[str], specs: dict[str, str], null_values: list[str], limit: int) -> None:
        self.limit = limit
        self.rows = 0
        self.bytes = 0
        self.profile = TableProfile(columns, null_values)
        self.check = TypeCheck(columns, specs, null_values)
        self.width = len(columns)

    def add(self, record: Record) -> bool:
        """Takes the record if it is among the first rows; False once full."""
        if self.rows >= self.limit or self.bytes >= FIRST_ROWS_BYTES:
            return False
        if record.error is None and record.fields is not None and len(record.fields) == self.width:
            self.rows += 1
            self.bytes += sum(map(len, record.fields))
            self.profile.add(record.fields)
            self.check.add(record.fields)
        return True

    async def read(self, read: Callable[[int], Awaitable[bytes]], start: Position, max_bytes: int) -> FirstRows:
        async for records in RecordReader(read, start).batches(min(self.limit, 1000), max_bytes):
            for record in records:
                if not self.add(record):
                    return self
            if self.rows >= self.limit or self.bytes >= FIRST_ROWS_BYTES:
                return self
        return self

    def inferred(self, specs: dict[str, str]) -> dict[str, str]:
        """Each column's type: as requested where it was, as inferred elsewhere."""
        return {**self.profile.inferred_types(), **specs}

    def findings(self, imports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return findings(self.profile.columns, self.profile.column_docs(), imports, self.check.counts)


class ImportReview:
    """The dry run of an import: every row typed as the job would, every valid
    row profiled; the first ``first_rows`` also check the requested types."""

    def __init__(self, columns: list[str], specs: dict[str, str], null_values: list[str], first_rows: int) -> None:
        self.columns = columns
        self.specs = specs
        self.typer = RowTyper(columns, {c: s for c, s in specs.items() if s != "string"}, null_values)
        self.first = FirstRows(columns, specs, null_values, first_rows)
        self.profile = TableProfile(columns, null_values)
        self.errors = ErrorTally()
        self.rows = 0
        self.valid = 0

    def add(self, records: list[Record]) -> None:
        for record in records:
            self.rows += 1
            self.first.add(record)
            data, error = self.typer.convert(record)
            if error is not None:
                self.errors.add(error)
                continue
            self.valid += 1
            assert record.fields is not None  # convert() reports a record without fields as an error
            self.profile.add(record.fields)

    def result(self, dataset: str, imports: list[dict[str, Any]], auto: bool) -> dict[str, Any]:
        docs = self.profile.column_docs()
        inferred = self.profile.inferred_types()
        found = findings(self.columns, docs, imports, self.first.check.counts)
        return {
            "dry_run": True,
            "dataset": dataset,
            "rows": self.rows,
            "valid_rows": self.valid,
            "errors": self.errors.as_dict(),
            "types_auto": auto,
            "columns": [
                {"name": c, "type": self.specs.get(c, "string"), "inferred_type": inferred[c], "profile": docs[c]}
                for c in self.columns
            ],
            "header": compare_header(self.columns, imports),
            "earlier_imports": len(imports),
            "findings": found,
        }
