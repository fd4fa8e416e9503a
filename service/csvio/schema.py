"""The CSV header (validated, mapped to names MongoDB accepts) and typed columns."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, InvalidCsv
from .records import BOM, Position

MAX_COLUMNS = 1000
HEADER_LIMIT = 1024 * 1024
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Header:
    names: list[str]  # as written in the file
    columns: list[str]  # the keys stored in each record's ``data``
    mapping: list[dict[str, str]]  # [{"from": original, "to": stored}] for names that had to change
    data_start: Position  # where the first data record begins


def header_end(head: bytes, complete: bool) -> tuple[int, int] | None:
    """(byte offset, line count) where the header record of ``head`` ends, or
    None when more bytes are needed. ``complete`` says whether ``head`` is the
    whole file."""
    end = len(BOM) if head.startswith(BOM) else 0
    lines, in_quotes = 0, False
    while True:
        newline = head.find(b"\n", end)
        if newline < 0:
            return (len(head), lines + 1) if complete else None
        if head.count(b'"', end, newline) % 2:
            in_quotes = not in_quotes
        end, lines = newline + 1, lines + 1
        if not in_quotes:
            return end, lines


def parse_header(head: bytes, complete: bool) -> Header:
    """Reads the header record from the first bytes of an upload. ``complete``
    says whether ``head`` is the whole file."""
    found = header_end(head, complete)
    if found is None:
        raise InvalidCsv(f"The header row is longer than {HEADER_LIMIT} bytes.")
    end, lines = found
    skip = len(BOM) if head.startswith(BOM) else 0
    raw = head[skip:end]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCsv("The header row is not valid UTF-8; save the file as UTF-8 (CSV UTF-8 in Excel).") from None
    if "\x00" in text:
        raise InvalidCsv("The header row contains NUL characters; is the file UTF-16? Save it as UTF-8.")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a stray carriage return inside a name (found by fuzzing)
        raise InvalidCsv(f"The header row cannot be read as CSV: {exc}.") from None
    names = rows[0] if rows else []
    if not any(n.strip() for n in names):
        raise InvalidCsv("The file is empty or its first line is blank; a header row is required.")
    if len(names) > MAX_COLUMNS:
        raise InvalidCsv(f"The header has {len(names)} columns; at most {MAX_COLUMNS} are allowed.")
    columns, mapping = _safe_names(names)
    return Header(names, columns, mapping, Position(offset=end, line=lines, row=0))


def _safe_names(names: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    # MongoDB field names may not contain '.' or start with '$'. Rather than
    # refusing a common spreadsheet header like "e.mail", store it as "e_mail"
    # and report the mapping on the job.
    empty = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise InvalidCsv(
            f"Header column {', '.join(map(str, empty))} has no name; every column needs one.", columns=empty
        )
    columns: list[str] = []
    mapping: list[dict[str, str]] = []
    for name in names:
        safe = name.strip().replace(".", "_")
        if safe.startswith("$"):
            safe = "_" + safe[1:]
        if safe != name:
            # A list, not a dict: the original names are exactly what may not be keys.
            mapping.append({"from": name, "to": safe})
        columns.append(safe)
    duplicates = sorted(c for c, n in Counter(columns).items() if n > 1)
    if duplicates:
        raise InvalidCsv(
            f"Duplicate header names: {', '.join(repr(d) for d in duplicates)}"
            + (" (after mapping '.' and '$' to '_')" if mapping else "")
            + "; every column needs a distinct name.",
            duplicates=duplicates,
        )
    return columns, mapping


# -- typed columns --------------------------------------------------------

TYPE_NAMES = ("string", "int", "float", "bool", "date")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _to_int(text: str) -> int:
    value = text.strip()
    if not _INT.fullmatch(value):
        raise ValueError("not an integer")
    number = int(value)
    if not INT64[0] <= number <= INT64[1]:
        raise ValueError("integer out of the 64-bit range")
    return number


def _to_float(text: str) -> float:
    value = text.strip()
    if not _FLOAT.fullmatch(value):
        raise ValueError("not a number")
    return float(value)


def _to_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("not a boolean (true/false, yes/no, 1/0)")


def parse_datetime(text: str) -> dt.datetime:
    """ISO 8601 date or datetime; a date is midnight UTC, a naive time is UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
        if len(value) < 10 or value[4] != "-":
            raise ValueError
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 date or datetime (2017-08-01 or 2017-08-01T10:00:00Z)") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "date": parse_datetime,
}


def parse_types(spec: str) -> dict[str, str]:
    """``col:type,col:type`` -> {col: type}. Columns are checked against the header
    later (the header is only known once the upload is read)."""
    types: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, kind = part.rpartition(":")
        name, kind = name.strip(), kind.strip().lower()
        if not sep or not name:
            raise BadRequest(f"types: {part!r} is not col:type", parameter="types")
        if kind not in TYPE_NAMES:
            raise BadRequest(
                f"types: {kind!r} for column {name!r} is not one of {', '.join(TYPE_NAMES)}", parameter="types"
            )
        if name in types:
            raise BadRequest(f"types: column {name!r} is given twice", parameter="types")
        types[name] = kind
    return types


def resolve_types(types: dict[str, str], header: Header) -> dict[str, str]:
    """Keys the types by stored column name; a name may be given as in the file or as stored."""
    by_original = dict(zip(header.names, header.columns))
    by_stripped = {n.strip(): c for n, c in by_original.items()}
    resolved: dict[str, str] = {}
    unknown = []
    for name, kind in types.items():
        column = by_original.get(name) or by_stripped.get(name) or (name if name in header.columns else None)
        if column is None:
            unknown.append(name)
        elif kind != "string":
            resolved[column] = kind
    if unknown:
        raise InvalidCsv(
            f"types names columns the header does not have: {', '.join(map(repr, unknown))}; "
            f"the header has {', '.join(map(repr, header.names))}",
            parameter="types",
        )
    return resolved
