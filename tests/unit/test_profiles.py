"""Value kinds, column profiles, type inference and findings, without a database."""

from __future__ import annotations

import random

import pytest

from service.profiles.findings import findings
from service.profiles.profile import DistinctSketch, TableProfile, infer_type
from service.profiles.values import kind_of


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("42", "int"),
        ("-7", "int"),
        ("3.25", "decimal"),
        ("1e5", "decimal"),
        ("2026-11-23", "date"),
        ("23/11/2026", "date"),
        ("2026-11-23T10:00:00Z", "datetime"),
        ("yes", "bool"),
        ("FALSE", "bool"),
        ("ada@example.org", "email"),
        ("(201) 555-0101", "phone"),
        ("+12015550101", "phone"),
        ("https://example.org/a", "url"),
        ("Ada Lovelace", "name"),
        ("O'Brien-Smith", "name"),
        ("Team 11", "text"),
        ("12 Main St., Springfield", "text"),
    ],
)
def test_each_value_gets_the_kind_a_person_would_give_it(text, kind):
    assert kind_of(text) == kind


def test_the_distinct_estimate_is_exact_when_small_and_close_when_large():
    small = DistinctSketch()
    for i in range(50):
        small.add(f"v{i % 40}")
    assert small.estimate() == 40
    large = DistinctSketch()
    for i in range(200_000):
        large.add(f"value {i % 100_000}")
    assert 60_000 < large.estimate() < 140_000


def test_a_profile_stays_the_same_size_whatever_the_number_of_rows():
    profile = TableProfile(["name", "note"])
    for i in range(20_000):
        profile.add([f"Person {chr(65 + i % 26)}", "x" * (i % 300)])
    doc = profile.column_docs()["note"]
    assert len(doc["sample"]) == 5 and all(len(s) <= 40 for s in doc["sample"])
    assert doc["length"] == {"min": 1, "max": 299}
    assert doc["rows"] == 20_000 and doc["kinds"]["empty"] == 67


def test_null_markers_count_as_empty_and_stay_out_of_the_inferred_type():
    profile = TableProfile(["age", "score", "seen"], null_values=["NA"])
    for row in (["1", "1.5", "2026-01-02"], ["NA", "NA", "NA"], ["3", "2", ""]):
        profile.add(row)
    assert profile.column_docs()["age"]["kinds"] == {"empty": 1, "int": 2}
    assert profile.inferred_types() == {"age": "int", "score": "float", "seen": "date"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "2", "3"], "int"),
        (["1", "2.5"], "float"),
        (["yes", "no", "t"], "bool"),
        (["2026-01-02", "2026-01-02T10:00:00Z"], "date"),
        (["23/11/2026", "1/2/2026"], "date:%d/%m/%Y"),
        (["11/23/2026", "1/2/2026"], "date:%m/%d/%Y"),
        (["23.11.2026"], "date:%d.%m.%Y"),
        (["5/6/2026"], "string"),  # either order fits: not guessed
        (["23/11/2026", "11/23/2026"], "string"),
        (["2026-01-02", "23/11/2026"], "string"),
        (["1", "x"], "string"),
        ([""], "string"),
    ],
)
def test_a_columns_type_is_inferred_only_when_every_value_fits_it(values, expected):
    profile = TableProfile(["c"])
    for value in values:
        profile.add([value])
    p = profile.profiles[0]
    assert infer_type(p.kinds(), p.dates) == expected


COLUMNS = ["name", "phone", "email", "age", "visited"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus"]


def people(seed: int, rows: int = 300, blanks: int = 3) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        out.append(
            [
                f"{first} {last}",
                f"({rng.randint(201, 989)}) 555-{rng.randint(0, 9999):04d}",
                f"{first.lower()}.{last.lower()}{i}@example.org",
                str(rng.randint(18, 90)),
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            ]
        )
    for _ in range(blanks):
        out[rng.randrange(rows)][rng.randrange(len(COLUMNS))] = ""
    return out


def entry(rows: list[list[str]], columns: list[str] = COLUMNS) -> dict:
    profile = TableProfile(columns)
    for row in rows:
        profile.add(row)
    return {"columns": columns, "profile": profile.column_docs(), "types": {}}


def found(rows: list[list[str]], history: list[dict], columns: list[str] = COLUMNS) -> list[dict]:
    new = entry(rows, columns)
    return findings(columns, new["profile"], history)


def test_swapped_name_and_phone_are_named_as_that_pair_with_their_history():
    history = [entry(people(seed)) for seed in (1, 2, 3)]
    swapped = [[r[1], r[0], *r[2:]] for r in people(4)]
    [finding] = found(swapped, history)
    assert finding["kind"] == "swapped_columns"
    assert set(finding["columns"]) == {"name", "phone"}
    assert "as `name` did in 3 earlier imports" in finding["message"]
    assert "looks like names" in finding["message"] and "looks like phone numbers" in finding["message"]


def test_fresh_correct_files_of_the_same_shape_raise_no_finding():
    history = [entry(people(seed)) for seed in (1, 2, 3)]
    for seed in range(100, 120):
        rows = people(seed, rows=random.Random(seed).randint(100, 400), blanks=5)
        random.Random(seed).shuffle(rows)
        assert found(rows, history) == []


def test_a_dataset_without_history_gets_no_finding():
    swapped = [[r[1], r[0], *r[2:]] for r in people(4)]
    assert found(swapped, []) == []
