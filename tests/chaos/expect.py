"""The checker's own model of what the service should have stored, computed
from the run's inputs and the jobs' final states only (never from the
service's code): the CSV an export of a dataset must be, and the teams and
users the completed teams jobs must have left."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from .inputs import ImportInput, TeamRow, TeamsInput, fold

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # The API's documented default, neutralize_formulas=true: such a cell gets a leading quote.
    return "'" + text if isinstance(value, str) and text.startswith(FORMULA_STARTS) else text


def export_csv(columns: list[str], imports: Iterable[tuple[str, ImportInput]], cache: dict | None = None) -> bytes:
    """An export of the given completed imports: their good rows in _id order,
    which is the import's id, then the row number (zero-padded in the _id).
    ``cache`` (import id -> its rows' CSV) spares a long run rendering every
    import again for each export that names it."""
    cache = {} if cache is None else cache
    parts = [_csv_line(columns)]
    for job_id, given in sorted(imports, key=lambda pair: pair[0]):
        key = (job_id, tuple(columns))
        if key not in cache:
            cache[key] = "".join(_csv_line([cell(given.good[row].get(c)) for c in columns]) for row in sorted(given.good))
        parts.append(cache[key])
    return "".join(parts).encode("utf-8")


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


def team_id(org: str, name: str) -> str:
    return f"{org}/{fold(name)}"


def user_id(org: str, phone: str) -> str:
    return f"{org}/{phone}"


@dataclass
class TeamsModel:
    """What one org's completed teams jobs must have left: every accepted row's
    team, created by that job from that row, and exactly the users those teams
    name, each listing exactly the teams that name it."""

    org: str
    teams: dict[str, tuple[str, TeamRow]] = field(default_factory=dict)  # team id -> (job, row)
    users: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # user id -> team ids
    manager_names: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # of accepted rows
    any_names: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # of any job's rows
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (job, what, detail)

    @classmethod
    def build(cls, org: str, completed: dict[str, tuple[TeamsInput, set[int]]], others: dict[str, TeamsInput]) -> TeamsModel:
        """``completed``: job -> (its sheet, the rows it reported as errors);
        ``others``: the org's teams jobs that did not complete (their team names
        may have been taken while they ran)."""
        model = cls(org)
        everyone = {**{j: s for j, (s, _) in completed.items()}, **others}
        for sheet in everyone.values():
            for row in sheet.rows:
                if row.valid and row.manager_name:
                    model.any_names[user_id(org, row.manager)].add(row.manager_name)
        keys = {j: [fold(r.team) for r in s.rows] for j, s in everyone.items()}
        for job, (sheet, errors) in sorted(completed.items()):
            keys_here = keys[job]
            for row in sheet.rows:
                key = fold(row.team)
                if row.row in errors:
                    if not row.valid:
                        continue
                    elsewhere = any(key in keys[j] for j in everyone if j != job)
                    if not (elsewhere or keys_here.count(key) > 1):
                        model.problems.append(
                            (job, "row refused", f"row {row.row} ({row.team!r}) is valid and its team is in no other sheet")
                        )
                    continue
                if not row.valid:
                    model.problems.append(
                        (job, "bad row accepted", f"row {row.row} has an invalid phone and is not among the row errors")
                    )
                    continue
                tid = team_id(org, row.team)
                if tid in model.teams:
                    other = model.teams[tid]
                    model.problems.append(
                        (job, "team twice", f"row {row.row} and job {other[0]} row {other[1].row} both accepted {tid!r}")
                    )
                    continue
                model.teams[tid] = (job, row)
                for uid in (user_id(org, row.manager), *(user_id(org, m) for m in row.members)):
                    model.users[uid].add(tid)
                if row.manager_name:
                    model.manager_names[user_id(org, row.manager)].add(row.manager_name)
        return model
