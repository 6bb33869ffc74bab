"""`formreader scan`, `template` and `read` through the real CLI (CliRunner), on generated forms."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from formreader.cli import app
from formreader.render import render_layout
from formreader.template import Layout, Template
from tests.forms import SECOND_LAYOUT, Scan, fill, scan, write_mixed_files

runner = CliRunner()
VALUES = {"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"}


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    """Good forms in every format plus bad files, in nested folders."""
    root = tmp_path_factory.mktemp("inbox")
    tpl = Template.load()
    page = fill(tpl, VALUES)
    cv2.imwrite(str(root / "a.png"), scan(page, Scan(angle=2)))
    cv2.imwrite(str(root / "b.jpg"), scan(page, Scan(angle=-3, scale=0.95, noise=6)), [cv2.IMWRITE_JPEG_QUALITY, 60])
    write_mixed_files(root, page)
    return root


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".xlsx"])
def test_scan_writes_one_row_per_page_and_keeps_going(inbox: Path, tmp_path: Path, tiny_model: Path, suffix: str):
    out = tmp_path / f"results{suffix}"
    # The default second opinion (PP-OCRv5) runs once; the other formats skip it to keep CI quick.
    quick = [] if suffix == ".csv" else ["--second-opinion", "off"]
    result = runner.invoke(app, ["scan", str(inbox), "--out", str(out), "--model", str(tiny_model), "--crops", str(tmp_path / "crops"), *quick])
    assert result.exit_code == 1, result.output  # some files failed: documented exit code 1
    if suffix == ".csv":
        df = pd.read_csv(out, keep_default_na=False)
    elif suffix == ".json":
        df = pd.DataFrame(json.loads(out.read_text()))
    elif suffix == ".xlsx":
        df = pd.read_excel(out, keep_default_na=False)
    else:
        df = pd.DataFrame([json.loads(line) for line in out.read_text().splitlines()])
    # JSON rows also carry each field's raw reading and alternatives; CSV keeps the documented columns.
    detail = [] if suffix in (".csv", ".xlsx") else [
        "NOM_raw", "PRENOM_raw", "DATE_raw", "CLASSE_raw",
        "NOM_alternatives", "PRENOM_alternatives", "DATE_alternatives", "CLASSE_alternatives",
    ]
    assert list(df.columns) == [
        "file", "page", "NOM", "PRENOM", "DATE", "CLASSE",
        "NOM_confidence", "PRENOM_confidence", "DATE_confidence", "CLASSE_confidence",
        *detail, "needs_review", "alignment", "error",
    ]
    rows = {(Path(f).name, int(p)): r for f, p, r in zip(df.file, df.page, df.to_dict("records"))}
    assert set(rows) == {("a.png", 1), ("b.jpg", 1), ("c.tif", 1), ("c.tif", 2), ("two.pdf", 1), ("two.pdf", 2),
                         ("zero.pdf", 1), ("garbage.png", 1), ("other.png", 1)}
    for key in [("a.png", 1), ("b.jpg", 1), ("c.tif", 2), ("two.pdf", 2)]:
        assert rows[key]["error"] == "" and float(rows[key]["alignment"]) > 0.8
        assert rows[key]["CLASSE"] == ""  # left blank on the form: nothing invented
    assert "empty file" in rows[("zero.pdf", 1)]["error"]
    assert "not an image" in rows[("garbage.png", 1)]["error"]
    other = rows[("other.png", 1)]
    assert str(other["needs_review"]).lower() == "true" and other["error"]
    assert not list(out.parent.glob(".results*"))  # no temporary file left behind
    assert len(list((tmp_path / "crops").glob("*.png"))) == 6 * 4  # 6 good pages x 4 fields


def test_scan_refuses_a_bad_output_name(inbox: Path, tmp_path: Path):
    result = runner.invoke(app, ["scan", str(inbox), "--out", str(tmp_path / "results.xls")])
    assert result.exit_code == 2 and ".csv" in result.output and ".xlsx" in result.output


def test_scan_with_nothing_to_read(tmp_path: Path):
    result = runner.invoke(app, ["scan", str(tmp_path), "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2 and "no PDF or image" in result.output


def test_a_failed_file_is_named_as_it_is_spelled(tmp_path: Path, tiny_model: Path):
    # Brackets in file names are not console markup, and no markup leaks into the messages.
    bad = tmp_path / "scan [draft].png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "results [v2].csv"
    result = runner.invoke(app, ["scan", str(bad), "--out", str(out), "--model", str(tiny_model), "--second-opinion", "off"])
    assert result.exit_code == 1, result.output
    text = "".join(result.output.split())  # rich wraps long lines, even inside a word

    def shown(message: str) -> bool:
        return "".join(message.split()) in text

    assert shown(f"failed {bad} page 1: not an image"), result.output
    assert shown(f"formreader scan → {out}") and out.exists(), result.output
    assert "[red]" not in text and "[/]" not in text, result.output


def test_second_template_end_to_end(tmp_path: Path, tiny_model: Path):
    layout_path = tmp_path / "layout.json"
    layout_path.write_text(json.dumps(SECOND_LAYOUT))
    blank = render_layout(Layout.from_dict(SECOND_LAYOUT))
    Image.fromarray(blank).save(tmp_path / "blank.pdf", resolution=200)
    tdir = tmp_path / "tpl"
    result = runner.invoke(app, ["template", "create", str(tmp_path / "blank.pdf"), "--layout", str(layout_path), "--out", str(tdir)])
    assert result.exit_code == 0, result.output
    tpl = Template.load(tdir)
    assert tpl.layout.field_names == ["PRENOM", "NOM", "DATE", "VILLE"] and abs(tpl.dpi - 200) < 1
    forms = tmp_path / "forms"
    forms.mkdir()
    cv2.imwrite(str(forms / "f.png"), scan(fill(tpl, VALUES), Scan(angle=-4, scale=1.05, dpi_factor=1.5)))
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["scan", str(forms), "--out", str(out), "--template", str(tdir), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out, keep_default_na=False).iloc[0]
    assert list(row.index[2:6]) == ["PRENOM", "NOM", "DATE", "VILLE"] and row.error == "" and row.VILLE == ""


def test_template_create_reports_a_bad_layout(tmp_path: Path):
    (tmp_path / "layout.json").write_text('{"fields": []}')
    Image.new("L", (100, 140), 255).save(tmp_path / "blank.png")
    result = runner.invoke(app, ["template", "create", str(tmp_path / "blank.png"), "--layout", str(tmp_path / "layout.json"), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "layout" in result.output


def test_help_teaches_with_examples():
    result = runner.invoke(app, ["scan", "--help"])
    assert result.exit_code == 0 and "formreader scan ./scans --out results.csv" in result.output


def test_version_is_the_installed_one():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"formreader {version('formreader')}"


def test_read_crops(tmp_path: Path, tiny_model: Path):
    img = fill(Template.load(), VALUES)[540:660, 300:1400]
    cv2.imwrite(str(tmp_path / "c1.png"), img)
    cv2.imwrite(str(tmp_path / "blank.png"), img * 0 + 255)
    (tmp_path / "bad.jpg").write_bytes(b"")
    out = tmp_path / "out" / "read.csv"
    result = runner.invoke(app, ["read", str(tmp_path), "--out", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 1, result.output
    df = pd.read_csv(out, keep_default_na=False).set_index("file")
    assert list(df.columns) == ["text", "confidence", "needs_review", "error"]
    assert df.loc[str(tmp_path / "blank.png"), "text"] == "" and df.loc[str(tmp_path / "blank.png"), "confidence"] == 1.0
    assert not df.loc[str(tmp_path / "blank.png"), "needs_review"]
    assert "empty file" in df.loc[str(tmp_path / "bad.jpg"), "error"] and df.loc[str(tmp_path / "bad.jpg"), "needs_review"]
    written = df.loc[str(tmp_path / "c1.png")]
    assert written["needs_review"] == (written["confidence"] < 0.995)  # the default review threshold
    # --review-threshold 0 accepts every readable crop; 1.0 sends every non-blank one to review
    for threshold, expected in (("0", False), ("1.0", True)):
        again = runner.invoke(app, ["read", str(tmp_path / "c1.png"), "--out", str(out), "--model", str(tiny_model),
                                    "--review-threshold", threshold])
        assert again.exit_code == 0 and "need review" in again.output, again.output
        assert bool(pd.read_csv(out)["needs_review"].iloc[0]) is expected


def test_process_file_is_a_plain_function_of_file_template_and_model(tmp_path: Path, tiny_model: Path):
    from formreader.pipeline import process_file
    from formreader.template import DEFAULT_TEMPLATE_DIR

    path = tmp_path / "form.png"
    cv2.imwrite(str(path), scan(fill(Template.load(), VALUES), Scan(angle=-2)))
    (record,) = process_file(path, DEFAULT_TEMPLATE_DIR, tiny_model)
    assert (record.file, record.page, record.error) == (str(path), 1, "")
    assert record.aligned and list(record.fields) == ["NOM", "PRENOM", "DATE", "CLASSE"]
    assert record.fields["CLASSE"].text == "" and all(t >= 0 for t in record.timings.seconds.values())
