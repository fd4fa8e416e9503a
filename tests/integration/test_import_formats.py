"""Null markers, typed formats, decimals and types=auto, through the real app
and database; and the parameters' bad values."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from bson import Decimal128

from ..support.helpers import start_import, wait_for_state
from .people import to_csv

UTC = dt.timezone.utc


async def records(db, job_id: str) -> list[dict]:
    return [r["data"] async for r in db.records.find({"job_id": job_id}).sort("_id", 1)]


async def imported(client, body: bytes, **params) -> dict:
    job = await start_import(client, body, **params)
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert done["state"] == "completed", done
    return done


R_EXPORT = b"""name,score,ratio,visited
"Ada",3,0.5,2026-11-23
"Grace",NA,NA,NA
"Alan", NA ,1.25,NA
"NA",7,NA,2026-01-02
"""


async def test_an_r_export_with_na_in_int_float_and_date_columns_imports_completely_with_null_values(client, db):
    types = "score:int,ratio:float,visited:date"
    without = await start_import(client, R_EXPORT, types=types)
    failed = await wait_for_state(client, without["id"], "completed", "failed")
    assert failed["progress"]["failed"] == 3
    assert failed["errors"][0] == {
        "line": 3,
        "row": 2,
        "kind": "invalid_value",
        "message": "column 'score': 'NA' is not an integer",
    }

    done = await imported(client, R_EXPORT, types=types, null_values="NA,N/A", dataset="r")

    assert done["progress"]["inserted"] == 4 and done["progress"]["failed"] == 0
    assert done["params"]["null_values"] == ["NA", "N/A"]
    assert await records(db, done["id"]) == [
        {"name": "Ada", "score": 3, "ratio": 0.5, "visited": dt.datetime(2026, 11, 23, tzinfo=UTC)},
        {"name": "Grace", "score": None, "ratio": None, "visited": None},
        {"name": "Alan", "score": None, "ratio": 1.25, "visited": None},
        # Quoting does not make "NA" a string: CSV quotes are not part of the value.
        {"name": None, "score": 7, "ratio": None, "visited": dt.datetime(2026, 1, 2, tzinfo=UTC)},
    ]


async def test_day_first_dates_are_typed_with_a_strptime_format(client, db):
    body = b"visited,seen\n23/11/2026,23/11/2026 10:30\n01/02/2026,01/02/2026 00:05\n"
    done = await imported(client, body, types="visited:date:%d/%m/%Y,seen:date:%d/%m/%Y %H:%M")

    assert done["params"]["types"] == {"visited": "date", "seen": "date"}
    assert done["params"]["formats"] == {"visited": "%d/%m/%Y", "seen": "%d/%m/%Y %H:%M"}
    assert await records(db, done["id"]) == [
        {"visited": dt.datetime(2026, 11, 23, tzinfo=UTC), "seen": dt.datetime(2026, 11, 23, 10, 30, tzinfo=UTC)},
        {"visited": dt.datetime(2026, 2, 1, tzinfo=UTC), "seen": dt.datetime(2026, 2, 1, 0, 5, tzinfo=UTC)},
    ]


async def test_a_format_that_reads_no_value_is_a_dry_run_finding_and_row_errors_in_the_job(client, db):
    body = b"visited\n2026-11-23\n2026-11-24\n"
    review = await start_import(client, body, expect=200, dry_run="true", types="visited:date:%d/%m/%Y")
    [finding] = review["findings"]
    assert finding["kind"] == "unparsable_values" and finding["columns"] == ["visited"]
    assert finding["message"] == "none of the 2 values of `visited` read parse as date:%d/%m/%Y, e.g. '2026-11-23'"
    assert review["errors"]["by_kind"] == {"invalid_value": 2}

    job = await start_import(client, body, types="visited:date:%d/%m/%Y")
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert done["progress"]["failed"] == 2
    assert done["errors"][0]["message"] == "column 'visited': '2026-11-23' is not a date in the format %d/%m/%Y"


MIXED = b"""id,price,active,day,label,when
1,9.5,yes,2026-11-23,apple,23/11/2026
2,10,no,2026-11-24,7 pears,01/12/2026
3,,true,,banana,
4,0.25,f,2026-01-01,,31/01/2026
"""


async def test_types_auto_infers_int_float_bool_date_and_string_and_types_the_rows(client, db):
    job = await start_import(client, MIXED, types="auto")
    assert job["params"]["inferred_types"] == {
        "id": "int",
        "price": "float",
        "active": "bool",
        "day": "date",
        "label": "string",
        "when": "date:%d/%m/%Y",
    }
    assert job["params"]["types_auto"] is True
    done = await wait_for_state(client, job["id"], "completed", "failed")
    assert done["progress"]["inserted"] == 4 and done["progress"]["failed"] == 0
    rows = await records(db, job["id"])
    assert rows[0] == {
        "id": 1,
        "price": 9.5,
        "active": True,
        "day": dt.datetime(2026, 11, 23, tzinfo=UTC),
        "label": "apple",
        "when": dt.datetime(2026, 11, 23, tzinfo=UTC),
    }
    assert rows[2]["price"] is None and rows[2]["day"] is None and rows[1]["label"] == "7 pears"

    review = await start_import(client, MIXED, expect=200, dry_run="true", types="auto,label:string,id:float")
    assert review["types_auto"] is True
    assert {c["name"]: c["type"] for c in review["columns"]}["id"] == "float"
    assert review["valid_rows"] == 4


async def test_decimal_columns_keep_amounts_exact(client, db):
    done = await imported(client, b"amount\n0.1\n0.2\n-1.10\n", types="amount:decimal")

    values = [r["amount"] for r in await records(db, done["id"])]
    supports_decimal128 = "ferretdbVersion" not in await db.db.command("buildInfo")
    if supports_decimal128:
        assert all(isinstance(v, Decimal128) for v in values)
        exact = [v.to_decimal() for v in values]
    else:
        # FerretDB 1.24 cannot store Decimal128: the exact decimal text instead.
        assert values == ["0.1", "0.2", "-1.10"]
        exact = [decimal.Decimal(v) for v in values]
    assert exact[0] + exact[1] == decimal.Decimal("0.3")
    assert exact[2] == decimal.Decimal("-1.10")
    resp = await client.post("/api/v1/exports/people.csv")
    assert await resp.text() == "amount\r\n0.1\r\n0.2\r\n-1.10\r\n"  # numbers, so not formula-neutralised


@pytest.mark.parametrize(
    ("params", "parameter", "words"),
    [
        ({"guard": "maybe"}, "guard", "guard must be one of off, warn, pause"),
        ({"header": "exact"}, "header", "header must be one of any, match"),
        ({"null_values": "NA,,NULL"}, "null_values", "an empty marker"),
        ({"types": "visited:date:%Q"}, "types", "is not a strptime date format"),
        ({"types": "visited:date:dd/mm/yyyy"}, "types", "is not a strptime date format"),
        ({"types": "age:int:%d"}, "types", "only date takes a format"),
        ({"types": "age:money"}, "types", "is not one of string, int, float, decimal, bool, date"),
        ({"dry_run": "perhaps"}, "dry_run", "dry_run must be true or false"),
        ({"batch_size": "0"}, "batch_size", "batch_size must be between 1 and 10000"),
    ],
)
async def test_a_parameter_that_does_not_parse_is_a_400_naming_it(client, db, params, parameter, words):
    for dry in ("false", "true"):
        problem = await start_import(client, to_csv([["a"]], ["name"]), expect=400, **({"dry_run": dry} | params))
        assert problem["parameter"] == parameter and words in problem["detail"], problem
    assert await db.jobs.count_documents({}) == 0
