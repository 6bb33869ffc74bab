"""Field grammars: which readings a field of a given kind may take.

The recognizers propose readings freely; a grammar says which of them are valid for the field
and proposes valid neighbours of invalid ones (a date read `230/12/1990` suggests `23/12/1990`
and `30/12/1990`). The reader then keeps the most likely *valid* reading, so an invalid one is
never chosen over a valid one; when nothing valid is likely, the confidence says so.

Kinds (a template field's `kind`):
- `name`: letters (accents included), space, hyphen, apostrophe; never digits.
- `date`: day, month, year as people write them (DD/MM/YYYY, D/M/YY, dots, dashes, spaces, no
  separators, boxed forms whose printed slashes were erased); only real calendar dates with a
  plausible birth year (`formreader.fields.parse_date`).
- `digits`: digits only (codes).
- `text`: anything (free text): no constraint.

A field may also list its `choices` (a closed vocabulary, e.g. school classes CP ... 2NDE): then
only those are valid, and every one of them is scored against the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("text", "name", "date", "digits")


@dataclass(frozen=True)
class Grammar:
    """What a field may hold: its kind, and optionally a closed list of values."""

    kind: str = "text"
    choices: tuple[str, ...] = ()

    def is_valid(self, text: str) -> bool:
        return text in self.choices if self.choices else is_valid(self.kind, text)

    def proposals(self, text: str) -> set[str]:
        return set(self.choices) if self.choices else proposals(self.kind, text)


def of(field: str | Grammar) -> Grammar:
    """A field kind ("date") or a Grammar, as a checked Grammar."""
    g = field if isinstance(field, Grammar) else Grammar(field)
    check_kind(g.kind)
    return g
DATE_SEPARATORS = "/.- "
_NAME_PUNCT = " -'"
# Look-alikes a recognizer confuses across the letter/digit divide, used to propose valid
# readings of the other kind.
_AS_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B", "4": "A", "7": "T"}
_AS_DIGIT = {"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "J": "1", "T": "7", "Z": "2", "S": "5",
             "G": "6", "B": "8", "A": "4", "U": "0"}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown field kind {kind!r} (choose {', '.join(KINDS)})")
    return kind


def is_valid(kind: str, text: str) -> bool:
    """Whether `text` (upper case, as read) is a valid value of this field kind; "" never is."""
    if not text:
        return False
    if kind == "name":
        return all(ch.isalpha() or ch in _NAME_PUNCT for ch in text) and any(ch.isalpha() for ch in text)
    if kind == "digits":
        return text.isdigit()
    if kind == "date":
        from formreader.fields import parse_date

        return parse_date(text)[1]
    return True


_DATE_GROUPS = re.compile(r"^\s*(\d{1,2})\s*[/.\- ]\s*(\d{1,2})\s*[/.\- ]")
MIXED_DATE_PENALTY = 3.0  # nats: about a 20-fold likelihood ratio


def log_prior(kind: str, text: str) -> float:
    """How plausible a valid reading is as written, before looking at the image (log scale, <= 0).

    Dates: people write day and month alike, both with two digits (23/04/1990) or both as
    needed (3/4/90); a reading mixing them (1/08/2020) usually lost a digit.
    """
    if kind == "date":
        m = _DATE_GROUPS.match(text)
        if m and len(m.group(1)) != len(m.group(2)):
            return -MIXED_DATE_PENALTY
    return 0.0


def proposals(kind: str, text: str) -> set[str]:
    """Valid readings near an invalid one (one edit, or a look-alike swap); empty for valid text."""
    if is_valid(kind, text) or not text:
        return set()
    if kind == "name":
        swapped = "".join(_AS_LETTER.get(ch, ch) for ch in text)
        stripped = "".join(ch for ch in swapped if ch.isalpha() or ch in _NAME_PUNCT).strip(_NAME_PUNCT)
        return {t for t in (swapped, stripped, " ".join(stripped.split())) if is_valid(kind, t)}
    if kind == "digits":
        swapped = "".join(_AS_DIGIT.get(ch, ch) for ch in text)
        return {t for t in (swapped, "".join(ch for ch in swapped if ch.isdigit())) if is_valid(kind, t)}
    if kind == "date":
        return {t for t in _date_edits(text) if is_valid(kind, t)}
    return set()


def _date_edits(text: str) -> set[str]:
    """One deletion, one digit substitution, or one separator inserted, after look-alike swaps."""
    base = "".join(_AS_DIGIT.get(ch, ch) for ch in text)
    base = "".join(ch for ch in base if ch.isdigit() or ch in DATE_SEPARATORS)
    out = {base}
    for i, ch in enumerate(base):
        out.add(base[:i] + base[i + 1 :])
        if ch.isdigit():
            out.update(base[:i] + d + base[i + 1 :] for d in "0123456789" if d != ch)
    for i in range(1, len(base)):
        out.add(base[:i] + "/" + base[i:])
    out |= _separators_read_as_digits(base)
    return out


# A slash (printed or hand-drawn) is often read as a 1 or a 7: `3010412020` is 30/04/2020.
_SLASH_AS = "17" + DATE_SEPARATORS


def _separators_read_as_digits(text: str) -> set[str]:
    """`text` with the 1s, 7s or separators where a date's separators would stand read as slashes:
    D?M?YY to DD?MM?YYYY (one or two digits for day and month, two or four for the year)."""
    out = set()
    for i in (1, 2):
        for j in (i + 2, i + 3):
            if j + 3 <= len(text) <= j + 5 and text[i] in _SLASH_AS and text[j] in _SLASH_AS:
                out.add(text[:i] + "/" + text[i + 1:j] + "/" + text[j + 1:])
    return out
