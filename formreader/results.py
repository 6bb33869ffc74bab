"""Read back the rows `scan` wrote (CSV, JSON, JSONL or .xlsx), for `review` and `apply`.

Values come back as scan wrote them: CSV cells stay the exact strings of the file, except the
columns scan itself typed (page, confidences, alignment, needs_review), which are turned back into
numbers and booleans so a CSV can be re-written as JSON and still say `0.91`, not `"0.91"`.
Files are decoded with `surrogateescape`, so a file name that is not UTF-8 comes back identical.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from formreader.errors import InputError
from formreader.writers import FORMULA_START, output_format

CONFIDENCE = "_confidence"
KEY_COLUMNS = ("file", "page")


@dataclass
class Results:
    path: Path
    columns: list[str]  # in file order
    rows: list[dict[str, object]]  # each in column order

    @property
    def field_names(self) -> list[str]:
        """Field columns (NOM, PRENOM, ...): those with a `<FIELD>_confidence` column beside them."""
        return [c for c in self.columns if c + CONFIDENCE in self.columns]

    def index(self) -> dict[tuple[str, int], dict[str, object]]:
        """Rows by (file, page): the key corrections and crops refer to."""
        return {row_key(r): r for r in self.rows}


def row_key(row: dict[str, object]) -> tuple[str, int]:
    return str(row["file"]), int(row["page"])  # type: ignore[arg-type]


def read_text(path: Path, what: str, encoding: str = "utf-8") -> str:
    """A results or corrections file as text: any file name's bytes kept, a \r in a cell kept."""
    try:
        with open(path, encoding=encoding, errors="surrogateescape", newline="") as fh:
            return fh.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc


def read_results(path: Path) -> Results:
    path = Path(path)
    fmt = output_format(path)
    try:
        columns, rows = _parse_xlsx(path) if fmt == "xlsx" else _parse(read_text(path, "results"), fmt)
    except (ValueError, csv.Error, KeyError, OSError) as exc:
        raise InputError(f"{path}: not a {fmt.upper()} file of scan results ({exc})") from exc
    missing = [c for c in KEY_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{path}: no {' or '.join(missing)} column: is this the output of `formreader scan`?")
    for n, row in enumerate(rows, start=1):
        try:
            row["page"] = int(row["page"])  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{path}: row {n}: page {row.get('page')!r} is not a number") from None
    return Results(path, columns, rows)


def _parse(text: str, fmt: str) -> tuple[list[str], list[dict[str, object]]]:
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # only \r and \n end a line
        columns = list(reader.fieldnames or [])
        return columns, [_typed({c: row.get(c) or "" for c in columns}) for row in reader]
    if fmt == "json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError("expected a list of rows")
    else:
        rows = [json.loads(line) for line in text.split("\n") if line.strip()]  # not splitlines: U+2028 is no line end here
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("every row must be an object")
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    return list(columns), [{c: r.get(c, "") for c in columns} for r in rows]


def _parse_xlsx(path: Path) -> tuple[list[str], list[dict[str, object]]]:
    """The first sheet: a header row, then typed cells (an empty cell is "")."""
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except BadZipFile as exc:
        raise ValueError(str(exc)) from exc
    try:
        table = book.worksheets[0].iter_rows(values_only=True)
        columns = [str(c) for c in next(table, ()) if c is not None]
        return columns, [{c: "" if v is None else v for c, v in zip(columns, row)} for row in table if any(v is not None for v in row)]
    finally:
        book.close()


def _typed(row: dict[str, object]) -> dict[str, object]:
    """CSV cells as scan meant them: numbers and booleans typed again, formula-looking text without
    the `'` the CSV writer put before it against CSV injection (`'=x.png` is the file `=x.png`:
    crops are found by the real name, and writing the row as CSV again puts the `'` back)."""
    for col, value in row.items():
        if isinstance(value, str) and value[:1] == "'" and value[1:].startswith(FORMULA_START):
            row[col] = value = value[1:]
        if col.endswith(CONFIDENCE) or col == "alignment":
            try:
                row[col] = float(value)  # type: ignore[arg-type]
            except ValueError:
                pass
        elif col == "needs_review" and value in ("True", "False"):
            row[col] = value == "True"
    return row
