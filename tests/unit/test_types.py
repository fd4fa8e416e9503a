"""The types, null_values parameters and the converters they choose."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from bson import Decimal128

from service.csvio.records import Record
from service.csvio.rows import RowTyper
from service.csvio.schema import converter, parse_null_values, parse_types, parse_types_param, split_specs
from service.errors import BadRequest

UTC = dt.timezone.utc


def test_types_take_strptime_formats_for_dates_and_decimal():
    specs = parse_types("visited:date:%d/%m/%Y, amount:decimal, at:date:%H:%M %d.%m.%Y,id:int")
    assert specs == {"visited": "date:%d/%m/%Y", "amount": "decimal", "at": "date:%H:%M %d.%m.%Y", "id": "int"}
    assert split_specs(specs) == (
        {"visited": "date", "amount": "decimal", "at": "date", "id": "int"},
        {"visited": "%d/%m/%Y", "at": "%H:%M %d.%m.%Y"},
    )
    assert parse_types("a:b:int") == {"a:b": "int"}  # a column name with ':' still works


def test_auto_may_stand_alone_or_beside_explicit_columns():
    assert parse_types_param("auto") == ({}, True)
    assert parse_types_param("AUTO, zip:string") == ({"zip": "string"}, True)
    assert parse_types_param("zip:int") == ({"zip": "int"}, False)


@pytest.mark.parametrize("spec", ["d:date:%Q", "d:date:dd/mm/yyyy", "n:int:%d", "n:money", "n", ":int"])
def test_a_types_value_that_does_not_parse_is_refused_naming_the_parameter(spec):
    with pytest.raises(BadRequest) as caught:
        parse_types(spec)
    assert caught.value.extra["parameter"] == "types"


def test_null_values_are_trimmed_markers_and_an_empty_value_means_none():
    assert parse_null_values(None) == [] and parse_null_values("") == []
    assert parse_null_values(" NA , N/A,NULL,NA") == ["NA", "N/A", "NULL"]
    for bad in ("NA,,NULL", ",".join(f"m{i}" for i in range(21)), "x" * 41):
        with pytest.raises(BadRequest, match="null_values"):
            parse_null_values(bad)


def test_a_date_format_reads_its_dates_as_utc_and_refuses_others():
    read = converter("date:%d/%m/%Y")
    assert read("23/11/2026") == dt.datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a date in the format %d/%m/%Y"):
        read("2026-11-23")
    assert converter("date:%d/%m/%Y %H:%M%z")("23/11/2026 10:00+0100") == dt.datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_decimals_are_exact_or_refused():
    assert converter("decimal")("0.1") == Decimal128("0.1")
    assert converter("decimal", decimal128=False)("-1.10") == "-1.10"
    total = converter("decimal")("0.1").to_decimal() + converter("decimal")("0.2").to_decimal()
    assert total == decimal.Decimal("0.3")
    for bad in ("1" * 35, "1e7000", "nan", "1,5"):
        with pytest.raises(ValueError):
            converter("decimal")(bad)


def test_null_markers_are_null_in_typed_and_string_columns_and_an_empty_string_cell_stays_empty():
    typer = RowTyper(["name", "age"], {"age": "int"}, ["NA"])
    data, error = typer.convert(Record(1, 2, ["NA", " NA "], None))
    assert (data, error) == ({"name": None, "age": None}, None)
    data, _ = typer.convert(Record(2, 3, ["", ""], None))
    assert data == {"name": "", "age": None}
    _, error = typer.convert(Record(3, 4, ["x", "n/a"], None))
    assert error == {"line": 4, "row": 3, "kind": "invalid_value", "message": "column 'age': 'n/a' is not an integer"}
    _, error = typer.convert(Record(4, 5, ["x"], None))
    assert error["kind"] == "missing_columns"
