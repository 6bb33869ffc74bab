"""Normalize recognized text per field kind: names upper-case, dates ISO 8601 and validated."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from formreader.records import FieldResult

# Digits stay: text fields such as a class ("6EME", "CM2") hold them, and a digit read in a name
# is better shown (with its low confidence) than silently dropped.
_NAME_JUNK = re.compile(r"[^0-9A-ZÀ-ÖØ-ÞŒŸ' -]")
_SPACES = re.compile(r"\s+")
_DATE_PARTS = re.compile(r"^\s*(\d{1,2})\s*[/.\- ]\s*(\d{1,2})\s*[/.\- ]\s*(\d{2,4})\s*$")
_DATE_DIGITS = re.compile(r"^\s*(\d{2})(\d{2})(\d{4})\s*$")


def normalize_name(raw: str) -> str:
    """Upper-case; letters, digits, space, hyphen and apostrophe only; single spaces."""
    text = unicodedata.normalize("NFC", raw).upper()
    text = _NAME_JUNK.sub("", text)
    text = _SPACES.sub(" ", text).strip(" -'")
    return text


def parse_date(raw: str, pivot_year: int | None = None) -> tuple[str, bool, str]:
    """(value, valid, note): ISO YYYY-MM-DD when valid, else the raw text and why it is doubtful."""
    text = raw.strip()
    if not text:
        return "", True, ""
    m = _DATE_PARTS.match(text) or _DATE_DIGITS.match(text.replace(" ", ""))
    if not m:
        return text, False, f"not a date: {text!r}"
    day, month, year = (int(g) for g in m.groups())
    if len(m.group(3)) == 2:  # two-digit years: the most recent past century
        pivot = pivot_year if pivot_year is not None else date.today().year % 100
        year += 2000 if year <= pivot else 1900
    elif len(m.group(3)) == 3:
        return text, False, f"year {m.group(3)} has 3 digits"
    try:
        value = date(year, month, day)
    except ValueError:
        return text, False, f"impossible date {day:02d}/{month:02d}/{year}"
    if value > date.today() or year < 1900:
        return value.isoformat(), False, f"implausible birth year {year}"
    return value.isoformat(), True, ""


def make_field(name: str, kind: str, raw: str, confidence: float) -> FieldResult:
    if kind == "date":
        value, valid, note = parse_date(raw)
        return FieldResult(name, value, raw, confidence, valid, note)
    return FieldResult(name, normalize_name(raw), raw, confidence)
