"""A people sheet (name, phone, email, age, visited) as a user's exports would
produce it: different values each time, a few blank cells."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable

COLUMNS = ["name", "phone", "email", "age", "visited"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman", "Thompson"]


def people(seed: int, rows: int = 200, blanks: int = 4) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        out.append(
            [
                f"{first} {last}",
                f"({rng.randint(201, 989)}) 555-{rng.randint(0, 9999):04d}",
                f"{first.lower()}.{last.lower()}{seed}x{i}@example.org",
                str(rng.randint(18, 90)),
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            ]
        )
    for _ in range(blanks):
        out[rng.randrange(rows)][rng.randrange(len(COLUMNS))] = ""
    rng.shuffle(out)
    return out


def change(rows: list[list[str]], column: str, value: Callable[[int, str], str]) -> list[list[str]]:
    index = COLUMNS.index(column)
    return [[value(i, v) if j == index else v for j, v in enumerate(row)] for i, row in enumerate(rows)]


def swap(rows: list[list[str]], a: str, b: str) -> list[list[str]]:
    """The values of two columns swapped under an unchanged header (example 1)."""
    i, j = COLUMNS.index(a), COLUMNS.index(b)
    out = [list(r) for r in rows]
    for row in out:
        row[i], row[j] = row[j], row[i]
    return out


def to_csv(rows: list[list[str]], header: list[str] = COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()
