"""What a cell looks like: one kind per value, decided by its text alone.

The kinds are deliberately coarse (a name, a phone number, a date...): a
column's mix of kinds is what stays the same from one import of a dataset to
the next, whatever the values, and what changes at once when two columns are
swapped or a column goes wrong. The teams sheet's checks use the same tests
(``looks_like_phone``, ``looks_like_name``)."""

from __future__ import annotations

import re

EMPTY = "empty"
INT = "int"
DECIMAL = "decimal"
DATE = "date"
DATETIME = "datetime"
BOOL = "bool"
EMAIL = "email"
PHONE = "phone"
URL = "url"
NAME = "name"
TEXT = "text"
KINDS = (EMPTY, INT, DECIMAL, DATE, DATETIME, BOOL, EMAIL, PHONE, URL, NAME, TEXT)
# How a finding's message says "looks like ...".
DESCRIBED = {
    EMPTY: "empty",
    INT: "whole numbers",
    DECIMAL: "decimal numbers",
    DATE: "dates",
    DATETIME: "date-times",
    BOOL: "true/false values",
    EMAIL: "email addresses",
    PHONE: "phone numbers",
    URL: "URLs",
    NAME: "names",
    TEXT: "other text",
}

BOOL_WORDS = frozenset({"true", "false", "yes", "no", "t", "f", "y", "n"})
_INT = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
# 23/11/2026, 11/23/2026, 23.11.2026, 23-11-2026: day and month in either order.
SLASHED_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"(https?|ftp)://\S+|www\.\S+\.\S+", re.IGNORECASE)
_PHONE_LIKE = re.compile(r"\+?[\d\s().\-/]{7,}")
_NAME = re.compile(r"[^\W\d_]+(?:[ '\u2019.,-]+[^\W\d_]+){0,5}\.?")


def looks_like_phone(text: str) -> bool:
    value = text.strip()
    return bool(_PHONE_LIKE.fullmatch(value)) and sum(c.isdigit() for c in value) >= 7


def looks_like_name(text: str) -> bool:
    return sum(c.isalpha() for c in text) >= 2


def kind_of(value: str) -> str:
    """The kind of a stripped, non-empty cell."""
    first = value[0]
    if first.isdigit() or first in "+-.(":
        if _INT.fullmatch(value):
            # "+15551234567" is written as a phone number, not a quantity.
            return PHONE if first == "+" and len(value) >= 8 else INT
        if _DECIMAL.fullmatch(value):
            return DECIMAL
        if _ISO_DATE.fullmatch(value) or SLASHED_DATE.fullmatch(value):
            return DATE
        if _ISO_DATETIME.fullmatch(value):
            return DATETIME
        if looks_like_phone(value):
            return PHONE
        return TEXT
    if len(value) <= 5 and value.lower() in BOOL_WORDS:
        return BOOL
    if "@" in value and _EMAIL.fullmatch(value):
        return EMAIL
    if _URL.match(value):
        return URL
    if len(value) <= 100 and _NAME.fullmatch(value):
        return NAME
    return TEXT


def date_style(value: str) -> str | None:
    """How a date cell is written: "iso", or "dmy/", "mdy/" (the order that its
    numbers allow, with its separator), "?/" when both orders fit (5/6/2026)."""
    if _ISO_DATE.fullmatch(value):
        return "iso"
    match = SLASHED_DATE.fullmatch(value)
    if match is None:
        return None
    first, sep, second = int(match[1]), match[2], int(match[3])
    if first > 12 and second <= 12:
        return "dmy" + sep
    if second > 12 and first <= 12:
        return "mdy" + sep
    return "?" + sep
