"""The teams CSV: which column is which, and each row checked and normalised
(phone numbers to E.164) or turned into a row error with a kind and a line."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from ..csvio.records import Record
from ..csvio.rows import EXTRA_COLUMNS, MALFORMED, MISSING_COLUMNS
from ..errors import InvalidCsv

COLUMNS = ("team", "manager_name", "manager_phone", "members")
REQUIRED = ("team", "manager_name", "manager_phone")
MEMBER_SEPARATOR = ";"
MAX_TEAM_NAME = 200
MAX_MEMBERS = 1000
# The longest members cell read at all: 1,000 numbers written generously
# ("+1 (202) 555-0123 ext. 12;"). A longer cell is refused before any parsing,
# so a row of 10,000 members costs a length check, not 10,000 phone parses.
MAX_MEMBERS_CELL = MAX_MEMBERS * 32

# Row error kinds, as counted by the dry run and the job's progress.
MISSING_TEAM = "missing_team"
INVALID_TEAM = "invalid_team"
INVALID_PHONE = "invalid_phone"
TEAM_EXISTS = "team_exists"
TOO_MANY_MEMBERS = "too_many_members"


def column_layout(names: Sequence[str]) -> dict[str, int]:
    """Where each known column is in the header: names compare without case, and
    spaces or hyphens count as underscores ("Manager Phone" is manager_phone).
    A missing required column or an unknown one is refused: in a sheet that
    creates thousands of teams, a misspelt header is a mistake, not a choice."""
    layout: dict[str, int] = {}
    unknown, repeated = [], []
    for index, name in enumerate(names):
        column = re.sub(r"[\s\-_]+", "_", name.strip().casefold())
        if column not in COLUMNS:
            unknown.append(name)
        elif column in layout:
            repeated.append(name)
        else:
            layout[column] = index
    expected = ", ".join(COLUMNS)
    if unknown:
        raise InvalidCsv(
            f"Unknown column {', '.join(repr(u) for u in unknown)}; the columns are {expected} (members is optional).",
            unknown=unknown,
            expected=list(COLUMNS),
        )
    if repeated:
        raise InvalidCsv(f"Column {', '.join(repr(r) for r in repeated)} appears twice.", repeated=repeated)
    missing = [c for c in REQUIRED if c not in layout]
    if missing:
        raise InvalidCsv(
            f"The header has no {', '.join(missing)} column; the columns are {expected} (members is optional).",
            missing=missing,
            expected=list(COLUMNS),
        )
    return layout


def supported_region(region: str) -> str:
    """A region code phonenumbers knows ("US", "GB", "DE"), upper-cased, or ValueError."""
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a region code such as US, GB or DE")
    return code


def normalise_phone(text: str, region: str) -> str:
    """E.164 form of a phone number written in any common way; numbers without
    a leading + are read as numbers of ``region``."""
    raw = text.strip()
    if not raw:
        raise ValueError("is empty")
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        raise ValueError(f"{raw[:40]!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        where = "" if raw.startswith("+") else f" in region {region}"
        raise ValueError(f"{raw[:40]!r} is not a valid phone number{where}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class TeamRow:
    row: int
    line: int
    team: str
    manager_name: str
    manager_phone: str  # E.164
    members: tuple[str, ...]  # E.164, without repeats and without the manager
    raw_phone: str  # the manager_phone field as written
    raw_members: str


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    line: int
    kind: str
    message: str
    fields: tuple[str, ...] = ()  # what the row said, when it had the right shape

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "row": self.row, "kind": self.kind, "message": self.message}


class RowParser:
    """Checks one record at a time; what needs the database (does the team exist?)
    is decided later, for a whole batch at once."""

    def __init__(self, layout: dict[str, int], width: int, region: str) -> None:
        self.layout = layout
        self.width = width
        self.region = region

    def parse(self, record: Record) -> TeamRow | RowError:
        if record.error is not None or record.fields is None:
            return RowError(record.row, record.line, MALFORMED, record.error or "malformed row")
        fields = record.fields
        if len(fields) != self.width:
            kind = MISSING_COLUMNS if len(fields) < self.width else EXTRA_COLUMNS
            return RowError(record.row, record.line, kind, f"expected {self.width} fields as in the header, found {len(fields)}")

        def error(kind: str, message: str) -> RowError:
            return RowError(record.row, record.line, kind, message, tuple(fields))

        layout = self.layout
        team = " ".join(fields[layout["team"]].split())
        name = " ".join(fields[layout["manager_name"]].split())
        raw_phone = fields[layout["manager_phone"]]
        raw_members = fields[layout["members"]] if "members" in layout else ""
        if len(raw_members) > MAX_MEMBERS_CELL:
            return error(
                TOO_MANY_MEMBERS,
                f"the members cell is {len(raw_members):,} characters long; at most {MAX_MEMBERS_CELL:,} "
                f"({MAX_MEMBERS:,} members) are read",
            )
        if not team:
            return error(MISSING_TEAM, "the team name is empty")
        if len(team) > MAX_TEAM_NAME:
            return error(INVALID_TEAM, f"the team name is longer than {MAX_TEAM_NAME} characters")
        try:
            phone = normalise_phone(raw_phone, self.region)
        except ValueError as exc:
            return error(INVALID_PHONE, f"manager_phone {exc}")
        members: dict[str, None] = {}
        for part in raw_members.split(MEMBER_SEPARATOR):
            if not part.strip():
                continue
            try:
                members[normalise_phone(part, self.region)] = None
            except ValueError as exc:
                return error(INVALID_PHONE, f"member {exc}")
        members.pop(phone, None)
        if len(members) > MAX_MEMBERS:
            return error(TOO_MANY_MEMBERS, f"the team has {len(members)} members; at most {MAX_MEMBERS} are allowed")
        return TeamRow(record.row, record.line, team, name, phone, tuple(members), raw_phone, raw_members)


async def parse_batch(parser: RowParser, records: Sequence[Record]) -> list[TeamRow | RowError]:
    """Parses a batch off the event loop: a batch of rows with 1,000 members
    each is a million phone numbers, seconds of CPU that would otherwise stall
    every request (/healthz among them). In a thread, the loop still runs
    every few milliseconds (the interpreter's switch interval)."""
    return await asyncio.to_thread(lambda: [parser.parse(record) for record in records])
