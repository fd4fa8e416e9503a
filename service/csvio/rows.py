"""A CSV record as a record's ``data``: the right number of fields, null
markers as null, typed columns converted; or a row error with a kind."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .records import Record
from .schema import converter

# Row error kinds, shared by imports and teams jobs and their dry runs.
MALFORMED = "malformed_row"
MISSING_COLUMNS = "missing_columns"
EXTRA_COLUMNS = "extra_columns"
INVALID_VALUE = "invalid_value"
TOO_LARGE = "row_too_large"


def row_error(record: Record, kind: str, message: str) -> dict[str, Any]:
    return {"line": record.line, "row": record.row, "kind": kind, "message": message}


def width_error(record: Record, width: int) -> dict[str, Any]:
    found = len(record.fields or ())
    kind = MISSING_COLUMNS if found < width else EXTRA_COLUMNS
    return row_error(record, kind, f"expected {width} fields, found {found}")


class RowTyper:
    """``types``: {column: type spec} for typed columns ("int", "date:%d/%m/%Y");
    ``null_values``: markers stored as null in every column. An empty cell is
    null in a typed column and "" in a string column, as before markers existed."""

    def __init__(
        self, columns: list[str], types: dict[str, str], null_values: Iterable[str] = (), decimal128: bool = True
    ) -> None:
        self.columns = columns
        self.width = len(columns)
        self.typed = [(i, c, converter(types[c], decimal128)) for i, c in enumerate(columns) if c in types]
        self.nulls = frozenset(null_values)
        self.untyped = [(i, c) for i, c in enumerate(columns) if c not in types]
        # With nothing to convert (no typed column, no null marker), a record
        # without an error and with this many fields converts to
        # dict(zip(columns, fields)): callers in a loop per row may do just that
        # instead of calling convert(). -1 when there is something to convert.
        self.plain_width = self.width if not self.typed and not self.nulls else -1

    def convert(self, record: Record) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(data, None) or (None, row error)."""
        fields = record.fields
        if record.error is not None or fields is None:
            return None, row_error(record, MALFORMED, record.error or "malformed row")
        if len(fields) != self.width:
            return None, width_error(record, self.width)
        data: dict[str, Any] = dict(zip(self.columns, fields))
        nulls = self.nulls
        if nulls:
            for index, column in self.untyped:
                if fields[index].strip() in nulls:
                    data[column] = None
        for index, column, convert in self.typed:
            text = fields[index]
            value = text.strip()
            if not value or value in nulls:
                data[column] = None
                continue
            try:
                data[column] = convert(value)
            except ValueError as exc:
                return None, row_error(record, INVALID_VALUE, f"column {column!r}: {text[:80]!r} is {exc}")
        return data, None
