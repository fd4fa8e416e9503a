"""The CSV header (validated, mapped to names MongoDB accepts) and typed columns."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson import Decimal128
from bson.decimal128 import create_decimal128_context

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
        raise InvalidCsv(f"Header column {', '.join(map(str, empty))} has no name; every column needs one.", columns=empty)
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

TYPE_NAMES = ("string", "int", "float", "decimal", "bool", "date")
AUTO = "auto"
MAX_NULL_VALUES = 20
MAX_NULL_CHARS = 40
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
# Decimal128 holds 34 significant digits; a value that needs more is refused
# rather than rounded, since decimal exists for exact amounts.
_DECIMAL128 = create_decimal128_context()
_DECIMAL128.traps.update({decimal.Inexact: True, decimal.Overflow: True, decimal.Underflow: True})


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


def _to_decimal(text: str) -> Decimal128:
    value = text.strip()
    if not _FLOAT.fullmatch(value):
        raise ValueError("not a decimal number")
    try:
        return Decimal128(_DECIMAL128.create_decimal(value))
    except (decimal.Inexact, decimal.Overflow, decimal.Underflow):
        raise ValueError("a decimal with more than 34 significant digits or out of range") from None


def _to_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("not a boolean (true/false, yes/no, 1/0)")


def parse_datetime(text: str, clamp: bool = False) -> dt.datetime:
    """ISO 8601 date or datetime; a date is midnight UTC, a naive time is UTC.
    A moment whose UTC time is past year 9999 or before year 1 (9999-12-31T23:00-14:00)
    is an error, unless ``clamp`` (a query bound) makes it the last or first moment."""
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
    try:
        return moment.astimezone(dt.timezone.utc)
    except OverflowError:
        if not clamp:
            raise ValueError("a moment outside the years 1 to 9999 in UTC") from None
        return (dt.datetime.max if moment.year > 1 else dt.datetime.min).replace(tzinfo=dt.timezone.utc)


def _date_in(fmt: str) -> Callable[[str], dt.datetime]:
    def convert(text: str) -> dt.datetime:
        try:
            moment = dt.datetime.strptime(text.strip(), fmt)
        except ValueError:
            raise ValueError(f"not a date in the format {fmt}") from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(dt.timezone.utc)

    return convert


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "decimal": _to_decimal,
    "bool": _to_bool,
    "date": parse_datetime,
}


def is_decimal_text(value: object) -> bool:
    return isinstance(value, str) and bool(_FLOAT.fullmatch(value))


def _to_decimal_text(text: str) -> str:
    return str(_to_decimal(text).to_decimal())


def converter(spec: str, decimal128: bool = True) -> Callable[[str], Any]:
    """The converter of a type spec: "int", "decimal", "date" or "date:%d/%m/%Y".
    Without ``decimal128`` (a server that cannot store it), a decimal is kept as
    its exact text, checked exactly as a Decimal128 would be."""
    kind, _, fmt = spec.partition(":")
    if fmt:
        return _date_in(fmt)
    if kind == "decimal" and not decimal128:
        return _to_decimal_text
    return CONVERTERS[kind]


def _type_spec(name: str, kind: str, fmt: str) -> str:
    if kind not in TYPE_NAMES:
        raise BadRequest(f"types: {kind!r} for column {name!r} is not one of {', '.join(TYPE_NAMES)}", parameter="types")
    if not fmt:
        return kind
    if kind != "date":
        raise BadRequest(f"types: column {name!r}: only date takes a format, not {kind}", parameter="types")
    # A format must be able to read back what it writes: that catches unknown
    # directives (%Q) and formats with no directive at all.
    sample = dt.datetime(2026, 11, 23, 10, 30, 15, tzinfo=dt.timezone.utc)
    try:
        if "%" not in fmt:
            raise ValueError
        dt.datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError:
        raise BadRequest(
            f"types: {fmt!r} for column {name!r} is not a strptime date format such as %d/%m/%Y", parameter="types"
        ) from None
    return f"date:{fmt}"


def parse_types(spec: str) -> dict[str, str]:
    """``col:type[:format],...`` -> {col: type spec}. Columns are checked against
    the header later (the header is only known once the upload is read). A
    column name may itself contain ':'; the first part that names a type ends it."""
    types: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        pieces = part.split(":")
        at = next((i for i in range(1, len(pieces)) if pieces[i].strip().lower() in TYPE_NAMES), None)
        if at is None:
            if len(pieces) < 2 or not pieces[0].strip():
                raise BadRequest(f"types: {part!r} is not col:type", parameter="types")
            at = len(pieces) - 1 if len(pieces) == 2 else 1
        name = ":".join(pieces[:at]).strip()
        if not name:
            raise BadRequest(f"types: {part!r} is not col:type", parameter="types")
        spec_of = _type_spec(name, pieces[at].strip().lower(), ":".join(pieces[at + 1 :]).strip())
        if name in types:
            raise BadRequest(f"types: column {name!r} is given twice", parameter="types")
        types[name] = spec_of
    return types


def parse_types_param(raw: str) -> tuple[dict[str, str], bool]:
    """The ``types`` parameter: explicit column types, and whether ``auto`` asks
    for the other columns' types to be inferred from the first rows."""
    parts = [p for p in raw.split(",") if p.strip()]
    auto = any(p.strip().lower() == AUTO for p in parts)
    return parse_types(",".join(p for p in parts if p.strip().lower() != AUTO)), auto


def parse_null_values(raw: str | None) -> list[str]:
    """``NA,N/A,NULL`` -> the markers (trimmed). Absent or empty: none, so only
    an empty cell is empty."""
    if raw is None or not raw.strip():
        return []
    markers = [m.strip() for m in raw.split(",")]
    if any(not m for m in markers):
        raise BadRequest(
            "null_values: an empty marker; list the markers separated by commas (NA,N/A,NULL)", parameter="null_values"
        )
    if len(markers) > MAX_NULL_VALUES or any(len(m) > MAX_NULL_CHARS for m in markers):
        raise BadRequest(
            f"null_values: at most {MAX_NULL_VALUES} markers of at most {MAX_NULL_CHARS} characters",
            parameter="null_values",
        )
    return list(dict.fromkeys(markers))


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
        else:
            resolved[column] = kind
    if unknown:
        raise InvalidCsv(
            f"types names columns the header does not have: {', '.join(map(repr, unknown))}; "
            f"the header has {', '.join(map(repr, header.names))}",
            parameter="types",
        )
    return resolved


def split_specs(specs: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """{col: spec} -> ({col: type} for typed columns, {col: date format}), as a
    job's params keep them (exports read the types)."""
    types, formats = {}, {}
    for column, spec in specs.items():
        kind, _, fmt = spec.partition(":")
        if kind != "string":
            types[column] = kind
        if fmt:
            formats[column] = fmt
    return types, formats
