"""Normalize recognized text per field kind: names upper-case, dates ISO 8601 and validated, codes digits."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date

from formreader.recognize import grammar
from formreader.records import FieldResult

# Digits stay in free text: a class ("6EME", "CM2") holds them. Name fields never get digits
# from the recognizer: their grammar (recognize/grammar.py) rules them out.
_NAME_JUNK = re.compile(r"[^0-9A-ZÀ-ÖØ-ÞŒŸ' -]")
_SPACES = re.compile(r"\s+")
_MARK_RUN = re.compile(r"[ '-]{2,}")  # JEAN - PIERRE, D 'ARC, DENIS- -LECLERCQ: one mark between two parts
_DATE_PARTS = re.compile(r"^\s*(\d{1,2})\s*[/.\- ]\s*(\d{1,2})\s*[/.\- ]\s*(\d{2,4})\s*$")
_DATE_DIGITS = re.compile(r"^\s*(\d{2})(\d{2})(\d{4}|\d{2})\s*$")  # DDMMYYYY, DDMMYY (boxes, no separators)
MAX_ALTERNATIVES = 5


def normalize_name(raw: str) -> str:
    """Upper-case; letters, digits, space, hyphen and apostrophe only; one mark between parts
    (a hyphen wins over an apostrophe, which wins over a space), except that the double hyphen
    of a French double surname (DENIS--LECLERCQ, as people write it on forms) stays."""
    text = unicodedata.normalize("NFC", raw).upper()
    text = _NAME_JUNK.sub("", text)
    text = _MARK_RUN.sub(_one_mark, _SPACES.sub(" ", text)).strip(" -'")
    return text


def _one_mark(run: re.Match) -> str:
    marks = run.group()
    hyphens = marks.count("-")
    return "--" if hyphens > 1 else "-" if hyphens else "'" if "'" in marks else " "


def normalize_digits(raw: str) -> str:
    return "".join(ch for ch in raw if ch.isdigit())


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


def normalize_value(kind: str, raw: str) -> tuple[str, bool, str]:
    """(value, valid, note) of a reading for a field of this kind."""
    if kind == "date":
        return parse_date(raw)
    if kind == "digits":
        value = normalize_digits(raw)
        ok = value == raw.replace(" ", "")
        return (value, True, "") if ok else (raw, False, f"not only digits: {raw!r}")
    value = normalize_name(raw)
    if kind == "name" and value and not grammar.is_valid(kind, value):  # no valid reading was likely
        return value, False, f"digits in a name: {raw!r}"
    return value, True, ""


def make_field(name: str, kind: str, text: str, confidence: float, raw: str | None = None,
               alternatives: Sequence[str] = ()) -> FieldResult:
    """A field's result from the chosen reading `text`; `raw` is the recognizers' own reading
    when a field grammar chose differently; `alternatives` are runner-up readings, best first."""
    value, valid, note = normalize_value(kind, text)
    others: list[str] = []
    for alt in alternatives:
        alt_value = normalize_value(kind, alt)[0]
        if alt_value and alt_value != value and alt_value not in others:
            others.append(alt_value)
    return FieldResult(name, value, raw if raw is not None else text, confidence, valid, note,
                       tuple(others[:MAX_ALTERNATIVES]))
