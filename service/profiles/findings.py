"""Compare a file's column profiles with the dataset's history and say, in
plain words and with the numbers behind them, what looks wrong.

Each column is reduced to its mix of value kinds among its non-empty cells.
That mix is stable from one correct file to the next (a phone column is phone
numbers whatever the numbers) and moves all at once when a column goes wrong,
so the thresholds can be far apart: a finding needs a change of at least half
the column, while files of the same shape differ by a few percent."""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any

from .values import BOOL, DATE, DATETIME, DECIMAL, DESCRIBED, EMAIL, EMPTY, INT, PHONE, URL

SWAPPED = "swapped_columns"
HEADER_MISMATCH = "header_mismatch"
TYPE_DRIFT = "type_drift"
NULL_SPIKE = "null_spike"
UNPARSABLE = "unparsable_values"

MIN_VALUES = 20  # non-empty cells a column needs before its mix is compared
DIFFERENT = 0.5  # total variation distance: "not the same kind of column"
ALIKE = 0.25  # total variation distance: "the same kind of column"
STEADY = 0.9  # share of one kind that makes a column "typed" in its history
FULL = 0.05  # at most this share empty: a full column
MOSTLY_EMPTY = 0.5
# Kinds that make a column typed; names and other text drift too easily.
TYPED_KINDS = frozenset({INT, DECIMAL, DATE, DATETIME, BOOL, EMAIL, PHONE, URL})


def _mix(kinds: dict[str, int]) -> dict[str, float]:
    filled = sum(n for k, n in kinds.items() if k != EMPTY)
    return {k: n / filled for k, n in kinds.items() if k != EMPTY and n} if filled else {}


def _distance(a: dict[str, float], b: dict[str, float]) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def _filled(kinds: dict[str, int]) -> int:
    return sum(n for k, n in kinds.items() if k != EMPTY)


def _top(mix: dict[str, float]) -> tuple[str, float]:
    return max(mix.items(), key=lambda item: item[1]) if mix else (EMPTY, 0.0)


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


class _Past:
    """One column across the earlier imports that had it."""

    def __init__(self, column: str, imports: list[dict[str, Any]]) -> None:
        self.column = column
        self.kinds: Counter[str] = Counter()
        self.tops: Counter[str] = Counter()  # kind -> imports in which it was the column's main kind
        self.imports = 0
        self.types: set[str] = set()
        for entry in imports:
            doc = (entry.get("profile") or {}).get(column)
            if doc is None:
                continue
            self.imports += 1
            self.kinds.update(doc["kinds"])
            self.tops[_top(_mix(doc["kinds"]))[0]] += 1
            if (entry.get("types") or {}).get(column):
                self.types.add(entry["types"][column])
        self.mix = _mix(dict(self.kinds))
        rows = sum(self.kinds.values())
        self.empty = self.kinds[EMPTY] / rows if rows else 0.0


def compare_header(columns: list[str], imports: list[dict[str, Any]]) -> dict[str, Any]:
    """The file's header against the dataset's latest import."""
    if not imports:
        return {"status": "new_dataset", "dataset_columns": [], "added": [], "missing": [], "reordered": False}
    known = list(imports[-1].get("columns") or [])
    added = [c for c in columns if c not in known]
    missing = [c for c in known if c not in columns]
    common_new = [c for c in columns if c in known]
    common_old = [c for c in known if c in columns]
    reordered = common_new != common_old
    status = "same" if not (added or missing or reordered) else "reordered" if not (added or missing) else "changed"
    return {"status": status, "dataset_columns": known, "added": added, "missing": missing, "reordered": reordered}


def findings(
    columns: list[str],
    profile: dict[str, dict[str, Any]],
    imports: list[dict[str, Any]],
    type_checks: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``profile``: {column: column profile doc} of the file; ``imports``: the
    dataset's earlier imports, oldest first; ``type_checks``: {column: {"spec",
    "checked", "parsed", "example"}} for the requested types."""
    found: list[dict[str, Any]] = []
    for column, check in (type_checks or {}).items():
        if check["checked"] and not check["parsed"]:
            found.append(
                {
                    "kind": UNPARSABLE,
                    "columns": [column],
                    "message": f"none of the {check['checked']} values of `{column}` read parse as "
                    f"{check['spec']}, e.g. {check['example']!r}",
                    "evidence": dict(check),
                }
            )
    if not imports:
        return found
    header = compare_header(columns, imports)
    if header["added"] or header["missing"]:
        parts = []
        if header["missing"]:
            parts.append("it lacks " + ", ".join(f"`{c}`" for c in header["missing"]))
        if header["added"]:
            parts.append("it adds " + ", ".join(f"`{c}`" for c in header["added"]))
        found.append(
            {
                "kind": HEADER_MISMATCH,
                "columns": header["missing"] + header["added"],
                "message": "The header differs from the dataset's: " + "; ".join(parts) + ".",
                "evidence": header,
            }
        )
    pasts = {c: _Past(c, imports) for c in columns}
    now = {c: _mix(profile[c]["kinds"]) for c in columns}
    compared = [c for c in columns if pasts[c].imports and pasts[c].mix and _filled(profile[c]["kinds"]) >= MIN_VALUES]
    swapped = _swaps(compared, pasts, now)
    found += swapped
    in_swap = {c for f in swapped for c in f["columns"]}
    for column in columns:
        past, doc = pasts[column], profile[column]
        if not past.imports or column in in_swap:
            continue
        empty_now = doc["kinds"].get(EMPTY, 0) / doc["rows"] if doc["rows"] else 0.0
        if past.empty <= FULL and empty_now >= MOSTLY_EMPTY and doc["rows"] >= MIN_VALUES:
            found.append(
                {
                    "kind": NULL_SPIKE,
                    "columns": [column],
                    "message": f"`{column}` is {_pct(empty_now)} empty; in {past.imports} earlier imports "
                    f"it was {_pct(past.empty)} empty.",
                    "evidence": {"empty_share": round(empty_now, 4), "earlier_empty_share": round(past.empty, 4)},
                }
            )
            continue
        drift = _drift(column, past, now[column]) if column in compared else None
        if drift is not None:
            found.append(drift)
    return found


def _swaps(compared: list[str], pasts: dict[str, _Past], now: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    candidates = []
    for a, b in combinations(compared, 2):
        pa, pb = pasts[a], pasts[b]
        if _distance(pa.mix, pb.mix) < DIFFERENT:
            continue  # the two columns never looked different: a swap could not be told
        own = (_distance(now[a], pa.mix), _distance(now[b], pb.mix))
        cross = (_distance(now[a], pb.mix), _distance(now[b], pa.mix))
        if min(own) >= DIFFERENT and max(cross) <= ALIKE:
            candidates.append((sum(own) - sum(cross), a, b))
    taken: set[str] = set()
    found = []
    for _, a, b in sorted(candidates, reverse=True):
        if a in taken or b in taken:
            continue
        taken |= {a, b}
        halves = []
        for col, other in ((a, b), (b, a)):
            kind, share = _top(now[col])
            halves.append(
                f"{_pct(share)} of `{col}` looks like {DESCRIBED[kind]}, "
                f"as `{other}` did in {pasts[other].tops[kind]} earlier imports"
            )
        found.append(
            {
                "kind": SWAPPED,
                "columns": [a, b],
                "message": f"`{a}` and `{b}` look swapped: " + "; ".join(halves) + ".",
                "evidence": {
                    col: {
                        "now": {k: round(v, 4) for k, v in now[col].items()},
                        "earlier": {k: round(v, 4) for k, v in pasts[col].mix.items()},
                        "earlier_imports": pasts[col].imports,
                    }
                    for col in (a, b)
                },
            }
        )
    return found


def _drift(column: str, past: _Past, now: dict[str, float]) -> dict[str, Any] | None:
    kind, share = _top(past.mix)
    if kind not in TYPED_KINDS or share < STEADY or now.get(kind, 0.0) >= MOSTLY_EMPTY:
        return None
    now_kind, now_share = _top(now)
    typed = f" (imported as {', '.join(sorted(past.types))})" if past.types else ""
    return {
        "kind": TYPE_DRIFT,
        "columns": [column],
        "message": f"`{column}` held {DESCRIBED[kind]} in {past.tops[kind]} earlier imports{typed}; "
        f"now {_pct(now_share)} of its values look like {DESCRIBED[now_kind]} "
        f"and {_pct(now.get(kind, 0.0))} like {DESCRIBED[kind]}.",
        "evidence": {
            "earlier_kind": kind,
            "earlier_share": round(share, 4),
            "now": {k: round(v, 4) for k, v in now.items()},
        },
    }
