"""Write records as CSV, JSON, JSONL, Excel (.xlsx) or Parquet, atomically (a crash never leaves a
half-written file).

Two things a hostile or unlucky input must not break:

* CSV injection: a text cell a spreadsheet would evaluate (starting with `=`, `+`, `-`, `@`, tab
  or carriage return: a file named `=HYPERLINK(...).png`, a misread name) gets a leading `'` in
  CSV, in every column, as OWASP recommends; numbers stay numbers. JSON/JSONL keep raw values;
  .xlsx cells are typed, text as text (never a formula), so they keep raw values too.
* File names that are not valid UTF-8: Python holds their odd bytes as lone surrogates
  (surrogateescape). CSV writes those bytes back unchanged; JSON/JSONL write them as `\\udcXX`
  escapes (valid JSON). Either way `os.fsencode(value)` gives the original name's bytes.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from formreader.errors import ConfigError
from formreader.records import PageRecord

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".xlsx": "xlsx", ".parquet": "parquet"}
REVIEW_FILL = "FFF2CC"  # pale amber: the rows of an .xlsx that need a person
MAX_COLUMN_WIDTH = 48
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP "CSV injection"
_SURROGATE = re.compile("[\ud800-\udfff]")


def output_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: output must end in .csv, .json, .jsonl, .xlsx or .parquet")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (pandas writes Parquet through it)
        except ImportError:
            raise ConfigError(f"{path}: Parquet output needs pyarrow: pip install 'formreader[ray]'") from None
    return fmt


def rows(records: Iterable[PageRecord], field_names: list[str], detail: bool = False) -> list[dict[str, object]]:
    return [r.row(field_names, detail) for r in records]


def columns(field_names: list[str]) -> list[str]:
    return list(PageRecord(file="", page=0).row(field_names))


def neutralize(value: object) -> object:
    """A string a spreadsheet would evaluate as a formula, made inert with a leading `'`.

    "-12" in a text column gets the quote too: formreader's text columns hold names, dates and
    paths, and a leading minus there is text. Numbers (page, confidences) are never touched."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def render(records: Iterable[PageRecord], field_names: list[str], fmt: str) -> str:
    return render_rows(rows(records, field_names, detail=True), fmt, columns(field_names))


def render_rows(table: list[dict[str, object]], fmt: str, column_names: list[str]) -> str:
    """Row dicts (as `PageRecord.row` makes them) -> the text of a CSV, JSON or JSONL file.
    CSV keeps `column_names` only; JSON rows also carry what else the dicts hold (each field's raw
    reading and alternatives). CSV text may hold lone surrogates: encode it with `encode_text`."""
    if fmt == "csv":
        safe = [{k: neutralize(v) for k, v in r.items()} for r in table]
        # The csv module, not pandas: pandas' arrow strings refuse surrogate-escaped names. CRLF line
        # ends (RFC 4180): with "\n" alone a "\r" inside a cell (a file name) is left unquoted and
        # readers split the row there.
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=column_names, lineterminator="\r\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(safe)
        return buf.getvalue()
    if fmt == "json":
        return _escape_surrogates(json.dumps(table, ensure_ascii=False, indent=1)) + "\n"
    return "".join(_escape_surrogates(json.dumps(r, ensure_ascii=False)) + "\n" for r in table)


def _escape_surrogates(json_text: str) -> str:
    # Lone surrogates only occur inside JSON strings, where \uXXXX is their valid spelling.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def encode_text(text: str) -> bytes:
    """UTF-8, with the surrogate-escaped bytes of non-UTF-8 file names written back as they were."""
    return text.encode("utf-8", "surrogateescape")


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    _atomic_write(path, lambda fh: fh.write(encode_text(text)))


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name holds our pid, so a later write can tell the leftovers of a killed
    # process (kill -9 during the write) from another process's write in progress.
    tmp = path.parent / f".{path.name}.{os.getpid()}.partial"
    tmp.unlink(missing_ok=True)  # our pid: a dead process's leftover
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies: shared like the results
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _remove_leftovers(path)


def _remove_leftovers(path: Path) -> None:
    """Delete `.NAME.PID.partial` files beside `path` whose process is gone."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
        pid = leftover.name[len(path.name) + 2 : -len(".partial")]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number no pid can have
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_records(path: Path, records: Iterable[PageRecord], field_names: list[str]) -> None:
    write_rows(path, rows(records, field_names, detail=True), columns(field_names))


def write_rows(path: Path, table: list[dict[str, object]], column_names: list[str]) -> None:
    fmt = output_format(path)
    if fmt == "parquet":  # columnar and compressed: for runs of millions of rows
        import pandas as pd

        # Arrow strings must be valid UTF-8: a non-UTF-8 file name keeps its odd bytes as \xNN.
        clean = [{k: printable(v) if isinstance(v, str) else v for k, v in r.items()} for r in table]
        frame = pd.DataFrame(clean, columns=column_names)
        _atomic_write(path, lambda fh: frame.to_parquet(fh, index=False))
    elif fmt == "xlsx":
        _atomic_write(path, lambda fh: _xlsx_workbook(table, column_names).save(fh))
    else:
        atomic_write_text(path, render_rows(table, fmt, column_names))


def _xlsx_workbook(table: list[dict[str, object]], column_names: list[str]):
    """A sheet to open by double-click (no delimiter or encoding to guess, as a CSV has in a
    French Excel): typed cells, the header frozen and filtered, the rows that need review shaded."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet("formreader")
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(column_names))}{len(table) + 1}"
    for i, name in enumerate(column_names, start=1):
        longest = max((len(str(r.get(name, ""))) for r in table[:200]), default=0)
        sheet.column_dimensions[get_column_letter(i)].width = min(max(len(name), longest) + 2, MAX_COLUMN_WIDTH)
    sheet.append([_xlsx_cell(sheet, name, Font(bold=True)) for name in column_names])
    shade = PatternFill("solid", fgColor=REVIEW_FILL)
    for row in table:
        fill = shade if row.get("needs_review") is True else None
        sheet.append([_xlsx_cell(sheet, row.get(name, ""), fill=fill) for name in column_names])
    return book


def _xlsx_cell(sheet, value: object, font=None, fill=None):
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, str):
        # XML cannot hold control characters, nor the odd bytes of a non-UTF-8 file name: both are
        # shown as \xNN.
        value = ILLEGAL_CHARACTERS_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", printable(value))
    elif value is not None and not isinstance(value, (bool, int, float)):
        value = str(value)
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        cell.data_type = "s"  # `=HYPERLINK(...)` read off a page stays text, never a formula
    if font is not None:
        cell.font = font
    if fill is not None:
        cell.fill = fill
    return cell


def printable(text: str) -> str:
    """Valid UTF-8 text for places that cannot hold raw bytes (Parquet, logs, the watch daemon's
    rows): the bytes of a non-UTF-8 file name shown as \\xNN."""
    return encode_text(text).decode("utf-8", "backslashreplace")
