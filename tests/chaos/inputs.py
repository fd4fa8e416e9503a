"""The files a chaos run uploads, each generated from its event's own seed, with
what the checker expects of them written down beside them (independently of
the service's parsing: the generator knows which rows it made bad)."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass

from ..support.helpers import manager_phone, member_phone

HEADERS = {"people": ["id", "name", "day", "note"], "sales": ["id", "name", "amount", "note"]}
TYPES = "id:int"
# Cells that test quoting and formula neutralization on the way out.
ODD_NAMES = ('Smith, "J"', "line\nbreak", "  spaced  ", "Ünïcode ✓")
ODD_NOTES = ("=1+1", "-5", "+7", "@sum", "ok")


@dataclass(frozen=True)
class ImportInput:
    body: bytes
    header: list[str]
    good: dict[int, dict]  # row number (1-based, bad rows counted) -> the record's data
    bad: frozenset[int]


def import_csv(seed: int, dataset: str, rows: int, bad: bool) -> ImportInput:
    rng = random.Random(seed)
    header = HEADERS[dataset]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    good: dict[int, dict] = {}
    bad_rows = set()
    base = rng.randrange(1_000_000)
    for row in range(1, rows + 1):
        ident = base + row
        name = rng.choice(ODD_NAMES) if rng.random() < 0.05 else f"name {ident}"
        third = f"2017-{row % 12 + 1:02d}-{row % 28 + 1:02d}" if dataset == "people" else f"{rng.randrange(100000) / 100:.2f}"
        note = rng.choice(ODD_NOTES) if rng.random() < 0.05 else f"n{rng.randrange(1000)}"
        if bad and rng.random() < 0.03:
            bad_rows.add(row)
            if rng.random() < 0.5:
                writer.writerow([f"x{ident}", name, third, note])  # not an int
            else:
                writer.writerow([ident, name, third, note, "extra"])  # a column too many
            continue
        writer.writerow([ident, name, third, note])
        good[row] = {"id": ident, header[1]: name, header[2]: third, "note": note}
    return ImportInput(out.getvalue().encode(), header, good, frozenset(bad_rows))


@dataclass(frozen=True)
class TeamRow:
    row: int
    team: str  # as written
    manager_name: str
    manager: str  # E.164
    members: tuple[str, ...]  # E.164, without repeats and without the manager
    valid: bool


@dataclass(frozen=True)
class TeamsInput:
    body: bytes
    rows: list[TeamRow]


def written(phone: str, style: int) -> str:
    area, mid, last = phone[2:5], phone[5:8], phone[8:]
    return (phone, f"({area}) {mid}-{last}", f"{area}-{mid}-{last}", f"{area}.{mid}.{last}")[style % 4]


def team_name(n: int, style: int) -> str:
    return (f"Team {n}", f"team {n}", f"TEAM  {n}", f" Team {n} ")[style % 4]


def teams_sheet(seed: int, rows: int) -> TeamsInput:
    """Rows drawn from small pools of team names (40), managers (30) and members
    (90) per org, so jobs overlap in teams and users; a few rows are bad."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["team", "manager_name", "manager_phone", "members"])
    made = []
    for row in range(1, rows + 1):
        n = rng.randint(1, 40)
        name = team_name(n, rng.randrange(4))
        manager = manager_phone(rng.randint(1, 30))
        picked = [member_phone(rng.randint(1, 90)) for _ in range(rng.randint(0, 3))]
        if picked and rng.random() < 0.1:
            picked.append(picked[0])  # a repeat
        if rng.random() < 0.05:
            picked.append(manager)  # the manager among the members
        manager_name = f"Manager {manager[-4:]}" if rng.random() < 0.9 else ""
        valid = rng.random() >= 0.06
        phone_cell = written(manager, rng.randrange(4)) if valid else "555-01"
        writer.writerow([name, manager_name, phone_cell, ";".join(written(p, rng.randrange(4)) for p in picked)])
        members = tuple(p for p in dict.fromkeys(picked) if p != manager)
        made.append(TeamRow(row, name, manager_name, manager, members, valid))
    return TeamsInput(out.getvalue().encode(), made)


def fold(text: str) -> str:
    """Team names compare without case and with runs of white space collapsed
    (the rule the API documents; written here again, not imported)."""
    return " ".join(text.split()).casefold()
