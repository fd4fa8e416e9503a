"""Bounded profiles of CSV columns: how many values of each kind, their length
range, a distinct-count estimate and a small sample; and the type a column's
values call for (``types=auto``).

A profile's size depends on the number of columns, never on the number of
rows: counters, a K-minimum-values sketch of K hashes and SAMPLE values."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from .values import BOOL, DATE, DATETIME, DECIMAL, EMPTY, INT, KINDS, date_style, kind_of

SAMPLE = 5
# Rows of an import that its dataset profile is built from, spread evenly over
# the file: the per-row cost stays bounded whatever the file's size.
PROFILE_ROWS = 10_000
SAMPLE_CHARS = 40
SKETCH = 64  # the K of the K-minimum-values distinct-count estimate (about 13% error)
_SPACE = float(2**64)
_HALF = 2**63
_NO_LENGTH = 1 << 62
KNOWN_VALUES = 256  # values per column whose kind is remembered, if short
KNOWN_CHARS = 64


class DistinctSketch:
    """K-minimum-values: keeps the K smallest hashes seen; the K-th smallest,
    as a fraction of the hash space, says how many distinct values there were.
    Python's str hash is random per process but stable within it, which is all
    a sketch used by one process needs."""

    __slots__ = ("heap", "kept", "bound")

    def __init__(self) -> None:
        self.heap: list[int] = []  # negated, so heap[0] is minus the largest kept hash
        self.kept: set[int] = set()
        self.bound = _HALF * 2

    def add(self, value: str) -> None:
        h = hash(value) + _HALF
        if h < self.bound:
            self.add_hash(h)

    def add_hash(self, h: int) -> None:
        """``h`` below ``bound`` (checked by the caller, on the hot path)."""
        if h in self.kept:
            return
        self.kept.add(h)
        heapq.heappush(self.heap, -h)
        if len(self.heap) > SKETCH:
            self.kept.discard(-heapq.heappop(self.heap))
            self.bound = -self.heap[0]

    def estimate(self) -> int:
        if len(self.heap) < SKETCH:
            return len(self.heap)
        return round((SKETCH - 1) / ((-self.heap[0] + 1) / _SPACE))


class ColumnProfile:
    __slots__ = ("rows", "empty", "counts", "min_len", "max_len", "sketch", "sample", "dates", "known")

    def __init__(self) -> None:
        self.rows = 0
        self.empty = 0
        self.counts: dict[str, int] = {}
        self.min_len = _NO_LENGTH
        self.max_len = 0
        self.sketch = DistinctSketch()
        self.sample: list[str] = []
        self.dates: dict[str, int] = {}  # date_style -> count
        # The kind of values seen before: most columns repeat values (cities,
        # flags, amounts), and a dict lookup is much cheaper than the patterns.
        self.known: dict[str, str] = {}

    def add(self, value: str) -> None:
        """``value`` stripped; "" for an empty cell or a null marker."""
        self.rows += 1
        if not value:
            self.empty += 1
            return
        kind = self.known.get(value)
        if kind is None:
            kind = kind_of(value)
            if len(self.known) < KNOWN_VALUES and len(value) <= KNOWN_CHARS:
                self.known[value] = kind
        counts = self.counts
        counts[kind] = counts.get(kind, 0) + 1
        size = len(value)
        if size < self.min_len:
            self.min_len = size
        if size > self.max_len:
            self.max_len = size
        h = hash(value) + _HALF
        if h < self.sketch.bound:
            self.sketch.add_hash(h)
        if len(self.sample) < SAMPLE and value[:SAMPLE_CHARS] not in self.sample:
            self.sample.append(value[:SAMPLE_CHARS])
        if kind == DATE:
            style = date_style(value)
            if style is not None:
                self.dates[style] = self.dates.get(style, 0) + 1

    def kinds(self) -> dict[str, int]:
        counts = {EMPTY: self.empty, **self.counts}
        return {kind: counts[kind] for kind in KINDS if counts.get(kind)}

    def as_doc(self) -> dict[str, Any]:
        """The stored and reported form; ``shares`` are fractions of all rows."""
        rows = self.rows or 1
        kinds = self.kinds()
        return {
            "rows": self.rows,
            "kinds": kinds,
            "shares": {kind: round(n / rows, 4) for kind, n in kinds.items()},
            "length": {"min": 0 if self.min_len == _NO_LENGTH else self.min_len, "max": self.max_len},
            "distinct_estimate": self.sketch.estimate(),
            "sample": list(self.sample),
            "date_styles": dict(self.dates),
        }


class TableProfile:
    """Profiles rows of a CSV whose header is ``columns``; cells equal to a null
    marker (after trimming) count as empty, as the import stores them."""

    def __init__(self, columns: Sequence[str], null_values: Iterable[str] = ()) -> None:
        self.columns = list(columns)
        self.nulls = frozenset(null_values)
        self.profiles = [ColumnProfile() for _ in self.columns]
        self.rows = 0

    def add(self, fields: Sequence[str]) -> None:
        """One row with as many fields as the header (others are row errors)."""
        self.rows += 1
        nulls = self.nulls
        for profile, raw in zip(self.profiles, fields):
            value = raw.strip()
            profile.add("" if value in nulls else value)

    def column_docs(self) -> dict[str, dict[str, Any]]:
        return {column: profile.as_doc() for column, profile in zip(self.columns, self.profiles)}

    def inferred_types(self) -> dict[str, str]:
        """column -> type spec ("int", "date:%d/%m/%Y", "string", ...)."""
        return {column: infer_type(p.kinds(), p.dates) for column, p in zip(self.columns, self.profiles)}


def infer_type(kinds: dict[str, int], dates: dict[str, int]) -> str:
    """The narrowest type every non-empty value fits; "string" when none does,
    or when dates are written day-first in some rows and month-first in others,
    or only in an order no value decides (5/6/2026)."""
    present = {kind for kind, n in kinds.items() if n and kind != EMPTY}
    if not present:
        return "string"
    if present == {INT}:
        return "int"
    if present <= {INT, DECIMAL}:
        return "float"
    if present == {BOOL}:
        return "bool"
    if present <= {DATE, DATETIME}:
        styled = _date_type(dates, kinds.get(DATE, 0))
        return "string" if DATETIME in present and styled != "date" else styled
    return "string"


def _date_type(dates: dict[str, int], date_count: int) -> str:
    if sum(dates.values()) != date_count:
        return "string"
    styles = set(dates)
    if styles <= {"iso"}:
        return "date"
    if "iso" in styles:
        return "string"
    seps = {style[-1] for style in styles}
    orders = {style[:-1] for style in styles} - {"?"}
    if len(seps) != 1 or len(orders) != 1:
        return "string"
    sep = seps.pop()
    return "date:" + ("%d{0}%m{0}%Y" if orders == {"dmy"} else "%m{0}%d{0}%Y").format(sep)
