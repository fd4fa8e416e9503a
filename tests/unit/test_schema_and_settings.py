from __future__ import annotations

import datetime as dt

import pytest

from service.csvio.schema import CONVERTERS, parse_datetime, parse_header, parse_types
from service.errors import BadRequest, InvalidCsv
from service.settings import ConfigError, Settings

UTC = dt.timezone.utc


def test_the_header_ends_at_its_record_even_with_a_quoted_newline():
    header = parse_header(b'id,"two\nlines"\n1,2\n', complete=True)
    assert header.names == ["id", "two\nlines"]
    assert header.data_start.offset == len(b'id,"two\nlines"\n')
    assert header.data_start.line == 2


def test_a_header_longer_than_what_was_kept_is_refused():
    with pytest.raises(InvalidCsv, match="longer than"):
        parse_header(b"a," * 100, complete=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2017-08-01", dt.datetime(2017, 8, 1, tzinfo=UTC)),
        ("2017-08-01T10:30:00", dt.datetime(2017, 8, 1, 10, 30, tzinfo=UTC)),
        ("2017-08-01T10:30:00Z", dt.datetime(2017, 8, 1, 10, 30, tzinfo=UTC)),
        ("2017-08-01T12:30:00+02:00", dt.datetime(2017, 8, 1, 10, 30, tzinfo=UTC)),
        (" 2017-08-01 ", dt.datetime(2017, 8, 1, tzinfo=UTC)),
    ],
)
def test_dates_are_iso_8601_and_stored_in_utc(text, expected):
    assert parse_datetime(text) == expected


@pytest.mark.parametrize("text", ["01/08/2017", "2017-13-01", "20170801", "yesterday", "2017-08-01T25:00"])
def test_dates_that_are_not_iso_8601_are_refused(text):
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_datetime(text)


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("int", " -42 ", -42),
        ("float", "1e3", 1000.0),
        ("float", "-.5", -0.5),
        ("bool", "Yes", True),
        ("bool", "0", False),
    ],
)
def test_typed_values(kind, text, expected):
    assert CONVERTERS[kind](text) == expected


@pytest.mark.parametrize(
    ("kind", "text"),
    [("int", "1_000"), ("int", "1.0"), ("int", str(2**63)), ("float", "nan"), ("float", "1,5"), ("bool", "maybe")],
)
def test_values_that_do_not_parse_as_their_type_are_refused(kind, text):
    with pytest.raises(ValueError):
        CONVERTERS[kind](text)


def test_types_parameter():
    assert parse_types("id:int, day : date,ok:BOOL") == {"id": "int", "day": "date", "ok": "bool"}
    assert parse_types("") == {}
    with pytest.raises(BadRequest, match="twice"):
        parse_types("a:int,a:float")


def test_settings_have_defaults_and_read_the_environment():
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.mongo.database) == ("127.0.0.1", 8080, "collect")
    settings = Settings.from_env(
        {"MONGODB_URI": "mongodb://u:p@db1,db2/prod?replicaSet=rs0", "PORT": "9000", "MAX_IMPORTS_PER_ORG": "2"}
    )
    assert settings.mongo.database == "prod" and settings.port == 9000 and settings.max_imports_per_org == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be an integer"),
        ({"PORT": "70000"}, "PORT must be between"),
        ({"MONGODB_URI": "postgres://x/y"}, "MONGODB_URI must look like"),
        ({"MONGODB_URI": "mongodb://h/bad.name"}, "names the database"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"JOB_LEASE_SECONDS": "1", "JOB_POLL_SECONDS": "1"}, "room for two renewals"),
        ({"SHUTDOWN_GRACE_SECONDS": "soon"}, "SHUTDOWN_GRACE_SECONDS must be a number"),
    ],
)
def test_bad_settings_fail_fast_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_password_in_a_bad_uri_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MONGODB_URI": "mongo://admin:s3cret@host/db"})
    assert "s3cret" not in str(info.value)
