"""Corrections from a reviewer (`file,page,field,value` CSV) applied to scan results.

A correction is a value a person confirmed or typed. It is normalized exactly as scan normalizes a
recognized value (`fields.make_field`), its confidence becomes 1.0, and the page's `needs_review` is
recomputed with scan's rule: it stays true while the page has an error, a field below the review
threshold that nobody confirmed, or an invalid date. Rows without a correction are left as they are.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from formreader.errors import InputError
from formreader.fields import make_field, parse_date
from formreader.results import CONFIDENCE, Results, read_text, row_key

HEADER = ["file", "page", "field", "value"]
CORRECTED = "corrected"  # output column: the fields whose value a correction changed, ';'-separated
RAW = "_raw"
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
MAX_LISTED = 20  # problems named in one error message


@dataclass(frozen=True)
class Correction:
    line: int  # in the corrections file, for error messages
    file: str
    page: int
    field: str
    value: str


@dataclass
class ApplySummary:
    corrections: int = 0
    pages: int = 0  # rows touched
    changed: int = 0  # fields whose value changed
    cleared: int = 0  # pages that no longer need review
    still_review: list[tuple[str, int]] = field(default_factory=list)  # touched pages still needing review
    warnings: list[str] = field(default_factory=list)


def read_corrections(path: Path) -> list[Correction]:
    path = Path(path)
    text = read_text(path, "corrections", encoding="utf-8-sig")  # a spreadsheet may add a BOM
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:4]] != HEADER:
        raise InputError(f"{path}: the first line must be the header {','.join(HEADER)} (got {header!r})")
    out, problems = [], []
    for cells in reader:
        line = reader.line_num
        if not cells:
            continue
        if len(cells) != 4:
            problems.append(f"line {line}: {len(cells)} cells, expected 4 ({','.join(HEADER)})")
            continue
        file, page, name, value = cells
        try:
            out.append(Correction(line, file, int(page), name, value))
        except ValueError:
            problems.append(f"line {line}: page {page!r} is not a number")
    _raise_if(problems, path)
    return out


def apply_corrections(results: Results, corrections: list[Correction], kinds: dict[str, str], review_threshold: float,
                      source: Path | str = "corrections") -> tuple[list[dict[str, object]], list[str], ApplySummary]:
    """(rows, columns, summary): results with the corrections applied; InputError naming every unknown row or field."""
    by_key = results.index()
    names = results.field_names
    problems = []
    for c in corrections:
        if (c.file, c.page) not in by_key:
            problems.append(f"line {c.line}: no row for file {c.file!r} page {c.page} in {results.path}")
        elif c.field not in names:
            problems.append(f"line {c.line}: unknown field {c.field!r} (fields: {', '.join(names)})")
    _raise_if(problems, source)

    rows = [dict(r) for r in results.rows]  # results stay as read
    columns = results.columns + ([] if CORRECTED in results.columns else [CORRECTED])
    touched: dict[tuple[str, int], dict[str, str]] = {}
    for c in corrections:  # a later line for the same field wins
        touched.setdefault((c.file, c.page), {})[c.field] = c.value
    summary = ApplySummary(corrections=len(corrections), pages=len(touched))
    for row in rows:
        values = touched.get(row_key(row))
        if values is None:
            row.setdefault(CORRECTED, "")
            continue
        changed = _correct_row(row, values, names, kinds, review_threshold, summary)
        previous = [f for f in str(row.get(CORRECTED) or "").split(";") if f]
        row[CORRECTED] = ";".join(f for f in names if f in changed or f in previous)
    return [{c: r.get(c, "") for c in columns} for r in rows], columns, summary


def _correct_row(row: dict[str, object], values: dict[str, str], names: list[str], kinds: dict[str, str],
                 threshold: float, summary: ApplySummary) -> set[str]:
    changed, doubtful = set(), False
    for name in names:
        if name in values:
            result = make_field(name, kinds.get(name, "text"), values[name], 1.0)
            if result.text != row[name]:
                changed.add(name)
            row[name], row[name + CONFIDENCE] = result.text, 1.0
            if name + RAW in row:
                row[name + RAW] = values[name]
            if not result.valid:
                doubtful = True
                summary.warnings.append(f"{row['file']} page {row['page']} {name}: {result.note}")
        else:
            doubtful |= field_doubtful(row, name, kinds.get(name, "text"), threshold)
    review = bool(row.get("error")) or doubtful
    summary.changed += len(changed)
    if review:
        summary.still_review.append(row_key(row))
    elif row.get("needs_review") not in (False, "False"):
        summary.cleared += 1
    row["needs_review"] = review
    return changed


def field_doubtful(row: dict[str, object], name: str, kind: str, threshold: float) -> bool:
    """Scan's rule for a field nobody corrected: below the threshold, or a date scan could not validate."""
    try:
        if float(row.get(name + CONFIDENCE, 0.0)) < threshold:  # type: ignore[arg-type]
            return True
    except (TypeError, ValueError):
        return True
    value = str(row.get(name) or "")
    if kind != "date" or not value:
        return False
    m = _ISO.match(value)  # scan writes a valid date in ISO and an unreadable one as its raw text
    return m is None or not parse_date(f"{m[3]}/{m[2]}/{m[1]}")[1]  # ISO but implausible (e.g. 1850)


def _raise_if(problems: list[str], source: Path | str) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise InputError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems[:MAX_LISTED]) + more)
