from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from formreader.errors import ConfigError
from formreader.records import FieldResult, PageRecord
from formreader.writers import write_records


def record(name: str) -> PageRecord:
    rec = PageRecord(file="a.pdf", page=2, alignment=0.97, aligned=True, needs_review=False)
    rec.fields["NOM"] = FieldResult("NOM", name, name.lower(), 0.91)
    return rec


def test_rewrite_is_atomic_and_readable_by_others(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    write_records(out, [record("MARTIN")], ["NOM"])
    write_records(out, [record("DURAND"), record("PETIT")], ["NOM"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["NOM"] for r in rows] == ["DURAND", "PETIT"]
    assert rows[0] == {"file": "a.pdf", "page": 2, "NOM": "DURAND", "NOM_confidence": 0.91,
                       "NOM_raw": "durand", "NOM_alternatives": [],
                       "needs_review": False, "alignment": 0.97, "error": ""}
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_killed_writers_leftover_is_removed_and_a_live_ones_kept(tmp_path: Path):
    import subprocess
    import sys

    out = tmp_path / "r.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f".r.csv.{int(dead.stdout)}.partial"  # kill -9 during a write leaves this
    gone.write_text("half a table")
    live = tmp_path / f".r.csv.{os.getppid()}.partial"  # a process still writing: not ours to delete
    live.write_text("in progress")
    other = tmp_path / ".other.csv.1.partial"
    other.write_text("another output's")
    write_records(out, [record("MARTIN")], ["NOM"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "r.csv"])


def test_unknown_extension_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"\.csv, \.json, \.jsonl, \.xlsx or \.parquet"):
        write_records(tmp_path / "r.xls", [record("X")], ["NOM"])
    assert not list(tmp_path.iterdir())


HOSTILE = ["=1+1", '=HYPERLINK("http://x","y")', "+33 6", "-12", "@SUM(A1)", "\tTAB", "\rCR"]


def test_csv_neutralizes_formulas_in_every_column_and_json_keeps_raw_values(tmp_path: Path):
    import pandas as pd

    records = []
    for value in HOSTILE:
        rec = record(value)
        rec.file = value + ".png"
        rec.error = value
        records.append(rec)
    write_records(tmp_path / "r.csv", records, ["NOM"])
    df = pd.read_csv(tmp_path / "r.csv", keep_default_na=False, dtype=str)
    for column in ("file", "NOM", "error"):
        assert all(cell.startswith("'") for cell in df[column]), df[column].tolist()
        assert [cell[1:] for cell in df[column]] == [r.row(["NOM"])[column] for r in records]
    assert df.NOM_confidence.tolist() == ["0.91"] * len(HOSTILE)  # numbers stay numbers
    for suffix in (".json", ".jsonl"):
        write_records(tmp_path / f"r{suffix}", records, ["NOM"])
        text = (tmp_path / f"r{suffix}").read_text()
        table = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
        assert [row["NOM"] for row in table] == HOSTILE and [row["file"] for row in table] == [v + ".png" for v in HOSTILE]


ODD_NAMES = [os.fsdecode(b"scans/a\xffb\xe9.png"), 'with "quotes", commas.pdf', "new\nline\r.tif", "ok-é.png"]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
def test_any_file_name_round_trips_to_its_bytes(tmp_path: Path, suffix: str):
    import csv

    records = []
    for name in ODD_NAMES:
        rec = record("MARTIN")
        rec.file = name
        records.append(rec)
    out = tmp_path / f"r{suffix}"
    write_records(out, records, ["NOM"])
    if suffix == ".csv":
        with open(out, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            names = [row["file"] for row in csv.DictReader(fh)]
    else:
        text = out.read_text(encoding="utf-8")  # strictly valid UTF-8: odd bytes are \udcXX escapes
        table = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
        names = [row["file"] for row in table]
    assert [os.fsencode(n) for n in names] == [os.fsencode(n) for n in ODD_NAMES]


def test_parquet_has_the_csv_columns_and_values(tmp_path: Path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    write_records(tmp_path / "r.parquet", [record("MARTIN"), record("")], ["NOM"])
    write_records(tmp_path / "r.csv", [record("MARTIN"), record("")], ["NOM"])
    got, want = pd.read_parquet(tmp_path / "r.parquet"), pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert list(got.columns) == list(want.columns) and got.astype(str).equals(want.astype(str))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.parquet"]  # no temporary file left


def test_xlsx_cells_are_typed_text_stays_text_and_rows_to_review_are_shaded(tmp_path: Path):
    from openpyxl import load_workbook

    from formreader.writers import REVIEW_FILL

    records = []
    for i, value in enumerate([*HOSTILE, "HÉLÈNE"]):
        rec = record(value)
        rec.file = value + ".png"
        rec.needs_review = i % 2 == 1
        records.append(rec)
    odd = record("MARTIN")
    odd.file = ODD_NAMES[0] + "\x01"  # not UTF-8, and a control character XML cannot hold
    records.append(odd)
    out = tmp_path / "r.xlsx"
    write_records(out, records, ["NOM"])
    assert [p.name for p in tmp_path.iterdir()] == ["r.xlsx"]  # no temporary file left
    sheet = load_workbook(out).active
    header, *body = list(sheet.iter_rows())
    assert [c.value for c in header] == ["file", "page", "NOM", "NOM_confidence", "needs_review", "alignment", "error"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:G{len(records) + 1}"
    for rec, row in zip(records[:-1], body):
        cells = {h.value: c for h, c in zip(header, row)}
        assert cells["NOM"].value == rec.fields["NOM"].text and cells["NOM"].data_type == "s"  # never a formula
        assert cells["file"].value == rec.file and cells["page"].value == 2
        assert cells["NOM_confidence"].value == 0.91 and cells["needs_review"].value is rec.needs_review
        assert (cells["NOM"].fill.fgColor.rgb == "00" + REVIEW_FILL) is rec.needs_review
    assert body[-1][0].value == "scans/a\\xffb\\xe9.png\\x01"  # shown as \xNN, as in Parquet and logs


def test_xlsx_reads_back_as_the_csv_does(tmp_path: Path):
    from formreader.results import read_results

    records = [record("MARTIN"), record("=1+1"), record("")]
    records[1].needs_review = True
    for suffix in (".csv", ".xlsx"):
        write_records(tmp_path / f"r{suffix}", records, ["NOM"])
    csv_back, xlsx_back = read_results(tmp_path / "r.csv"), read_results(tmp_path / "r.xlsx")
    assert xlsx_back.columns == csv_back.columns and xlsx_back.field_names == ["NOM"]
    assert xlsx_back.rows == csv_back.rows
