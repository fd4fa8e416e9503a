"""The teams sheet's columns, rows and the shift detector, without a database."""

from __future__ import annotations

import pytest

from service.csvio.records import Record
from service.errors import InvalidCsv
from service.profiles.values import looks_like_phone
from service.store.teams import team_id, team_key
from service.teams.review import ShiftDetector
from service.teams.rows import RowError, RowParser, TeamRow, column_layout, normalise_phone

LAYOUT = {"team": 0, "manager_name": 1, "manager_phone": 2, "members": 3}


def parse(*fields: str, region: str = "US") -> TeamRow | RowError:
    return RowParser(LAYOUT, 4, region).parse(Record(row=1, line=2, fields=list(fields), error=None))


@pytest.mark.parametrize(
    "written, region, e164",
    [
        ("(201) 555-0123", "US", "+12015550123"),
        ("+1 201 555 0123", "DE", "+12015550123"),
        ("030 901820", "DE", "+4930901820"),
        ("  201.555.0123 ", "US", "+12015550123"),
    ],
)
def test_phone_numbers_are_normalised_to_e164(written, region, e164):
    assert normalise_phone(written, region) == e164


@pytest.mark.parametrize("written", ["", "555-01", "Ann Smith", "+999 1234"])
def test_invalid_phone_numbers_are_refused(written):
    with pytest.raises(ValueError):
        normalise_phone(written, "US")


def test_the_header_is_matched_loosely_but_must_be_complete_and_known():
    assert column_layout(["Manager Phone", "TEAM", "manager-name"]) == {
        "manager_phone": 0,
        "team": 1,
        "manager_name": 2,
    }
    with pytest.raises(InvalidCsv, match="no manager_phone column"):
        column_layout(["team", "manager_name"])
    with pytest.raises(InvalidCsv, match="Unknown column 'phone'"):
        column_layout(["team", "manager_name", "phone"])


def test_a_row_becomes_a_team_with_distinct_members_other_than_its_manager():
    row = parse(" Sales   North ", "Ann", "201-555-0001", "202-555-0001; 202 555 0001;201-555-0001;;")
    assert isinstance(row, TeamRow)
    assert row.team == "Sales North"
    assert row.manager_phone == "+12015550001"
    assert row.members == ("+12025550001",)


@pytest.mark.parametrize(
    "fields, kind",
    [
        (("", "Ann", "201-555-0001", ""), "missing_team"),
        (("x" * 201, "Ann", "201-555-0001", ""), "invalid_team"),
        (("T", "Ann", "nope", ""), "invalid_phone"),
        (("T", "Ann", "201-555-0001", "202-555-0001;12"), "invalid_phone"),
        (("T", "Ann", "201-555-0001"), "missing_columns"),
        (("T", "Ann", "201-555-0001", "", "x"), "extra_columns"),
    ],
)
def test_each_bad_row_has_a_kind(fields, kind):
    error = parse(*fields)
    assert isinstance(error, RowError)
    assert error.kind == kind and error.line == 2


def test_team_names_are_one_team_whatever_their_case_and_spacing():
    assert team_key("  Sales   NORTH ") == "sales north"
    assert team_id("org", "Sales North") == team_id("org", "sales  north")


def test_phone_like_names_are_spotted():
    assert looks_like_phone("+1 (201) 555-0101")
    assert not looks_like_phone("Room 101")


def feed(detector: ShiftDetector, names: list[str], owners: dict[int, str]) -> None:
    for row, name in enumerate(names, start=1):
        detector.add(row, name, owners.get(row))
    detector.finish()


def test_the_shift_detector_finds_the_offset_in_either_direction():
    names = [f"person {i}" for i in range(1, 101)]
    down = ShiftDetector()
    # Phones slid down 7 rows: row i holds the phone of the person on row i-7.
    feed(down, names, {i: names[i - 8] for i in range(8, 101)})
    assert down.dominant() == (7, 93)

    up = ShiftDetector()
    feed(up, names, {i: names[i + 2] for i in range(1, 98)})
    assert up.dominant() == (-3, 97)


def test_scattered_name_mismatches_are_not_a_shift():
    detector = ShiftDetector()
    names = [f"person {i}" for i in range(1, 101)]
    feed(detector, names, {5: "someone else", 50: "person 40", 90: "nobody"})
    assert detector.dominant() is None


def test_a_members_cell_too_long_is_refused_before_any_phone_is_parsed(monkeypatch):
    from service.teams import rows

    parsed = []
    real = rows.normalise_phone
    monkeypatch.setattr(rows, "normalise_phone", lambda text, region: parsed.append(text) or real(text, region))
    members = ";".join(f"202-555-{i % 10_000:04d}" for i in range(10_000))
    result = parse("Team 1", "Ann", "(201) 555-0123", members)
    assert isinstance(result, RowError) and result.kind == "too_many_members"
    assert "members cell is 129,999 characters long" in result.message
    assert parsed == []


def test_a_row_of_1000_members_written_in_full_is_still_read():
    members = ";".join(f"+1 (202) 555-{i:04d}" for i in range(1000))
    result = parse("Team 1", "Ann", "(201) 555-0123", members)
    assert isinstance(result, TeamRow) and len(result.members) == 1000
