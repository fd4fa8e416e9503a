"""The export's CSV rendering: slices of rows written at once must give exactly
what rendering each cell by the export's rules gives."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random

import pytest

from service.csvio.schema import is_decimal_text
from service.jobs.kinds.exports import FORMULA_STARTS, CsvRenderer

CELLS = [
    "plain",
    "",
    None,
    "café",
    "a,b",
    'say "hi"',
    "two\nlines",
    "line\n=not at a cell's start",
    "=1+1",
    "+x",
    "-3",
    "@a",
    "\ttab",
    "\rcr",
    "=a,b",
    '"=quoted"',
    5,
    2.5,
    True,
    dt.datetime(2024, 1, 5, 12, 30),
    dt.datetime(2024, 1, 5, tzinfo=dt.timezone.utc),
]
FORMULAS = {c for c in CELLS if isinstance(c, str) and c.startswith(FORMULA_STARTS)}


def expected(docs, columns, numeric, neutralize):
    """Each cell by the rules, written row by row."""

    def cell(column, value):
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat().replace("+00:00", "Z")
        if column in numeric and (isinstance(value, (int, float)) or is_decimal_text(value)):
            return str(value)  # a number, even "-3", is not a formula
        text = str(value)
        return "'" + text if neutralize and text.startswith(FORMULA_STARTS) else text

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for doc in docs:
        writer.writerow([cell(c, doc["data"].get(c)) for c in columns])
    return out.getvalue().encode()


def documents(columns, pool, rows, seed):
    rng = random.Random(seed)
    docs = []
    for n in range(rows):
        data = {c: rng.choice(pool) for c in columns if rng.random() > 0.02}  # now and then a column is missing
        docs.append({"_id": n, "data": data})
    return docs


@pytest.mark.parametrize("neutralize", [True, False])
@pytest.mark.parametrize("columns", [["a", "b", "c"], ["only"]])
@pytest.mark.parametrize(
    "pool, slice_rows",
    [
        (["plain", "", None, "café", "a,b"], 50),  # every slice plain: the C path throughout
        (CELLS, 1),
        (CELLS, 7),
        (["plain"] * 40 + CELLS, 64),  # mostly plain slices, some with a formula or a typed value
        # Text only (a missing column now and then): formulas in slices the one-join check reads.
        (["plain", "", "café", "a,b", "=1+1", "-3", "@a", "\rcr", '"=quoted"', "line\n=not at a cell's start"], 16),
    ],
)
def test_rendering_slices_at_once_equals_rendering_every_cell_by_the_rules(neutralize, columns, pool, slice_rows):
    docs = documents(columns, pool, 400, seed=len(pool) * slice_rows)
    renderer = CsvRenderer(columns, {"c": "int", "only": "float"}, neutralize)
    header = renderer.header()
    for start in range(0, len(docs), slice_rows):
        renderer.add(docs[start : start + slice_rows])
    got = renderer.take()
    numeric = {"c", "only"} & set(columns)
    assert header == (",".join(columns) + "\r\n").encode()
    assert got == expected(docs, columns, numeric, neutralize)
    if neutralize and any(v in FORMULAS for d in docs for v in d["data"].values()):
        assert b"'=" in got or b"'+" in got or b"'-" in got or b"'@" in got


def test_the_pending_length_counts_every_slice_until_taken():
    renderer = CsvRenderer(["a", "b"], {}, True)
    first = renderer.add([{"data": {"a": "x", "b": "y"}}])
    second = renderer.add([{"data": {"a": "=1", "b": "y"}}])
    assert (first, second) == (5, 12)
    assert renderer.take() == b"x,y\r\n'=1,y\r\n"
    assert renderer.pending == 0 and renderer.take() == b""


def test_a_date_columns_midnights_are_written_as_the_dates_they_were_imported_from():
    renderer = CsvRenderer(["day", "at"], {"day": "date", "at": "date"}, True)
    midnight = dt.datetime(2017, 8, 1, tzinfo=dt.timezone.utc)
    renderer.add([{"data": {"day": midnight, "at": dt.datetime(2017, 8, 1, 9, 30, tzinfo=dt.timezone.utc)}}])
    assert renderer.take() == b"2017-08-01,2017-08-01T09:30:00Z\r\n"
    untyped = CsvRenderer(["day"], {}, True)
    untyped.add([{"data": {"day": midnight}}])
    assert untyped.take() == b"2017-08-01T00:00:00Z\r\n"
