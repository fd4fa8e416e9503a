"""The dry run's findings: row errors by kind, a preview of the first rows, and
warnings that point at shifted or swapped columns.

The shift check: when a row's manager_phone belongs to an existing user whose
name is not the row's manager_name, look for that name among the 20 rows
above and below. In a sheet whose phone column slid down ten rows, almost
every such phone's owner is named exactly ten rows above, so one offset
dominates. The sheet's edges agree: its first rows have no phone, and its
last rows have a phone but no team."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from ..profiles.review import SAMPLE, ErrorTally
from ..profiles.values import looks_like_name, looks_like_phone
from ..store.teams import fold, user_id
from .rows import RowError, TeamRow

PREVIEW_ROWS = 20
WINDOW = 20  # rows above and below searched for a phone's owner
TRACKED_ROWS = 200_000  # rows the cross-row checks remember; memory stays bounded past that
LINES_LISTED = 5

PHONE_OWNER_MISMATCH = "phone_owner_mismatch"
NAME_LOOKS_LIKE_PHONE = "name_looks_like_phone"
PHONE_LOOKS_LIKE_NAME = "phone_looks_like_name"
MANAGER_OF_SEVERAL = "manager_of_several_teams"
MEMBERS_EQUAL_MANAGER = "members_equal_manager"


def _name_key(name: str | None) -> str:
    return fold(name or "")


class ShiftDetector:
    """Votes for the offset between a phone's row and its owner's row."""

    def __init__(self) -> None:
        self.names: deque[tuple[int, str]] = deque(maxlen=2 * WINDOW + 1)
        self.pending: deque[tuple[int, str]] = deque()
        self.votes: Counter[int] = Counter()
        self.mismatches = 0

    def add(self, row: int, name: str | None, owner: str | None) -> None:
        """``owner``: the existing user's name when it differs from ``name``."""
        self.names.append((row, _name_key(name)))
        if owner:
            self.pending.append((row, _name_key(owner)))
            self.mismatches += 1
        while self.pending and self.pending[0][0] <= row - WINDOW:
            self._resolve(*self.pending.popleft())

    def finish(self) -> None:
        while self.pending:
            self._resolve(*self.pending.popleft())

    def _resolve(self, row: int, owner: str) -> None:
        near = dict(self.names)
        for distance in range(1, WINDOW + 1):
            # offset > 0: the phone sits ``offset`` rows below its owner's row.
            for offset in (distance, -distance):
                if near.get(row - offset) == owner:
                    self.votes[offset] += 1
                    return

    def dominant(self) -> tuple[int, int] | None:
        if not self.votes:
            return None
        offset, count = self.votes.most_common(1)[0]
        if count >= 3 and count * 2 >= self.mismatches:
            return offset, count
        return None


@dataclass
class _Edges:
    """Runs of rows at the start without a phone, at the end with a phone only."""

    leading_no_phone: int = 0
    leading_done: bool = False
    trailing_phone_only: int = 0
    trailing_no_phone: int = 0

    def add(self, has_phone: bool, has_team_or_name: bool) -> None:
        if not self.leading_done:
            if has_phone:
                self.leading_done = True
            else:
                self.leading_no_phone += 1
        self.trailing_phone_only = self.trailing_phone_only + 1 if has_phone and not has_team_or_name else 0
        self.trailing_no_phone = self.trailing_no_phone + 1 if not has_phone and has_team_or_name else 0


class Review:
    """Fed one batch at a time; ``result()`` is the dry run's answer."""

    def __init__(self, org_id: str, layout: dict[str, int]) -> None:
        self.org_id = org_id
        self.layout = layout
        self.rows = 0
        self.valid = 0
        self.preview: list[dict[str, Any]] = []
        self.errors = ErrorTally()
        self.warnings: Counter[str] = Counter()
        self.warning_sample: list[dict[str, Any]] = []
        self.shift = ShiftDetector()
        self.edges = _Edges()
        self.tracked = 0
        self.untracked = 0
        self.manager_rows: dict[str, list[int]] = {}  # phone -> lines where it is the manager
        self.single_members: list[tuple[int, str]] = []  # (line, phone) of rows with one member
        self.users_existing: set[str] = set()
        self.users_new: set[str] = set()

    def add(self, parsed: list[TeamRow | RowError], rejected: list[RowError], users: dict[str, dict[str, Any]]) -> None:
        """``parsed``: the batch as read; ``rejected``: rows refused because their team
        exists; ``users``: the existing users the batch's phones name."""
        refused = {e.row: e for e in rejected}
        for item in parsed:
            self.rows += 1
            if isinstance(item, RowError):
                self._invalid(item)
                continue
            owner_name = (users.get(user_id(self.org_id, item.manager_phone)) or {}).get("name")
            if not (owner_name and item.manager_name and _name_key(owner_name) != _name_key(item.manager_name)):
                owner_name = None
            self.shift.add(item.row, item.manager_name, owner_name)
            self.edges.add(True, True)
            if owner_name:
                self._warn(
                    item.line,
                    PHONE_OWNER_MISMATCH,
                    f"manager_phone {item.manager_phone} belongs to the existing user {owner_name!r}, not {item.manager_name!r}",
                )
            if looks_like_phone(item.manager_name):
                self._warn(item.line, NAME_LOOKS_LIKE_PHONE, f"manager_name {item.manager_name!r} looks like a phone number")
            error = refused.get(item.row)
            if error is not None:
                self._count(error)
            else:
                self.valid += 1
                self._track(item, users)
            self._preview(item, owner_name, error)

    def _invalid(self, error: RowError) -> None:
        """A row that could not be read as a team."""
        self._count(error)
        if len(self.preview) < PREVIEW_ROWS:
            self.preview.append({"line": error.line, "error": error.as_dict()})
        if not error.fields:
            self.shift.add(error.row, None, None)
            return
        name = error.fields[self.layout["manager_name"]]
        phone = error.fields[self.layout["manager_phone"]]
        team = error.fields[self.layout["team"]]
        self.shift.add(error.row, name, None)
        self.edges.add(bool(phone.strip()), bool(team.strip() or name.strip()))
        if phone.strip() and looks_like_name(phone):
            self._warn(error.line, PHONE_LOOKS_LIKE_NAME, f"manager_phone {phone[:40]!r} looks like a name")

    def _count(self, error: RowError) -> None:
        self.errors.add(error.as_dict())

    def _preview(self, row: TeamRow, owner_name: str | None, error: RowError | None) -> None:
        if len(self.preview) >= PREVIEW_ROWS:
            return
        entry: dict[str, Any] = {
            "line": row.line,
            "team": row.team,
            "manager": {"name": row.manager_name, "phone": row.manager_phone},
            "members": len(row.members),
        }
        if owner_name:
            entry["phone_owner"] = owner_name
        if error is not None:
            entry["error"] = error.as_dict()
        self.preview.append(entry)

    def _track(self, row: TeamRow, users: dict[str, dict[str, Any]]) -> None:
        if self.tracked >= TRACKED_ROWS:
            self.untracked += 1
            return
        self.tracked += 1
        self.manager_rows.setdefault(row.manager_phone, []).append(row.line)
        if len(row.members) == 1:
            self.single_members.append((row.line, row.members[0]))
        for phone in (row.manager_phone, *row.members):
            uid = user_id(self.org_id, phone)
            (self.users_existing if uid in users else self.users_new).add(uid)

    def _warn(self, line: int, kind: str, message: str) -> None:
        self.warnings[kind] += 1
        if len(self.warning_sample) < SAMPLE:
            self.warning_sample.append({"line": line, "kind": kind, "message": message})

    def _cross_row_warnings(self) -> None:
        for phone, lines in self.manager_rows.items():
            if len(lines) > 1:
                listed = ", ".join(map(str, lines[:LINES_LISTED])) + (", ..." if len(lines) > LINES_LISTED else "")
                self._warn(lines[0], MANAGER_OF_SEVERAL, f"{phone} is the manager of {len(lines)} teams (lines {listed})")
        for line, phone in self.single_members:
            others = [n for n in self.manager_rows.get(phone, ()) if n != line]
            if others:
                self._warn(line, MEMBERS_EQUAL_MANAGER, f"the members of line {line} are exactly the manager of line {others[0]}")

    def _shift_report(self) -> dict[str, Any]:
        self.shift.finish()
        evidence = []
        offset = None
        dominant = self.shift.dominant()
        if dominant is not None:
            offset, count = dominant
            where = "above" if offset > 0 else "below"
            evidence.append(
                f"of {self.shift.mismatches} rows whose manager_phone belongs to an existing user with another name, "
                f"{count} have that user as the manager_name {abs(offset)} rows {where}"
            )
        edges = self.edges
        if edges.leading_no_phone and edges.trailing_phone_only:
            evidence.append(
                f"the first {edges.leading_no_phone} rows have no manager_phone and the last "
                f"{edges.trailing_phone_only} rows have a phone but no team or name"
            )
            offset = offset if offset is not None else edges.leading_no_phone
        elif edges.trailing_no_phone and offset is not None and offset < 0:
            evidence.append(f"the last {edges.trailing_no_phone} rows have no manager_phone")
        if offset is None:
            return {"suspected": False}
        direction = "down" if offset > 0 else "up"
        return {
            "suspected": True,
            "column": "manager_phone",
            "direction": direction,
            "rows": abs(offset),
            "message": f"manager_phone looks shifted {direction} by {abs(offset)} rows: " + "; ".join(evidence) + ".",
            "evidence": evidence,
        }

    def result(self) -> dict[str, Any]:
        shift = self._shift_report()
        self._cross_row_warnings()
        self.warning_sample.sort(key=lambda w: w["line"])
        return {
            "dry_run": True,
            "rows": self.rows,
            "valid_rows": self.valid,
            "would_create": {"teams": self.valid, "users": len(self.users_new)},
            "would_change": {"users": len(self.users_existing)},
            "preview": self.preview,
            "errors": self.errors.as_dict(),
            "warnings": {
                "count": sum(self.warnings.values()),
                "by_kind": dict(self.warnings),
                "first": self.warning_sample,
            },
            "shift": shift,
            "cross_row_checks": "all rows" if not self.untracked else f"the first {TRACKED_ROWS} rows",
        }
