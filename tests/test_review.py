"""`formreader review` (the HTML page, without a browser) and `formreader apply`, through the CLI."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from formreader.cli import app
from formreader.pipeline import crop_path
from tests.review_set import STRICT, make_set

runner = CliRunner()
FIELDS = ["NOM", "PRENOM", "DATE", "CLASSE"]
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("review")
    results, crops, truth = make_set(root)
    csv_results = root / "results.csv"
    run = runner.invoke(app, ["scan", str(root / "forms"), "--out", str(csv_results), "--review-threshold", STRICT,
                              "--second-opinion", "off"])
    assert run.exit_code == 1, run.output
    return {"jsonl": results, "csv": csv_results, "crops": crops, "truth": truth, "root": root}


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8", errors="surrogateescape").split("\n") if line]


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8", errors="surrogateescape"), newline="")))


class Page(HTMLParser):
    """The review page as the browser's parser sees it: sections, inputs, images, chips, scripts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[dict] = []
        self.scripts = 0
        self.csp = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append({**a, "alts": []})
        elif tag == "input" and self.sections:
            self.sections[-1]["value"] = a["value"]
        elif tag == "img" and self.sections:
            self.sections[-1]["img"] = a["src"]
        elif tag == "button" and "alt" in a.get("class", "").split():
            self.sections[-1]["alts"].append(a["data-value"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = a["content"]


def review(scanned: dict, out: Path, *extra: str, results: Path | None = None) -> Page:
    run = runner.invoke(app, ["review", str(results or scanned["jsonl"]), "--crops", str(scanned["crops"]), "--out", str(out),
                              "--review-threshold", STRICT, *extra])
    assert run.exit_code == 0, run.output
    return Page(out.read_text(encoding="utf-8"))


def shown(row: dict, field: str) -> str:
    value = row[field]
    if field == "DATE" and ISO.match(value):
        y, m, d = value.split("-")
        return f"{d}/{m}/{y}"
    return value  # names, and a date scan could not read as one (its raw text)


def test_review_page_holds_the_doubtful_fields_lowest_confidence_first(scanned, tmp_path: Path):
    out = tmp_path / "review.html"
    page = review(scanned, out)
    rows = {(r["file"], r["page"]): r for r in jsonl_rows(scanned["jsonl"])}
    expected = {(r["file"], r["page"], f) for r in rows.values() if not r["error"]
                for f in FIELDS if r[f + "_confidence"] < float(STRICT) or (f == "DATE" and r[f] and not ISO.match(r[f]))}
    got = [(base64.b64decode(s["data-file-bytes"]), int(s["data-page"]), s["data-field"]) for s in page.sections]
    assert {(os.fsdecode(f), p, n) for f, p, n in got} == expected and len(got) == len(expected)
    confidences = [float(s["data-confidence"]) for s in page.sections]
    assert confidences == sorted(confidences)
    for s, (file_bytes, p, field) in zip(page.sections, got):
        row = rows[(os.fsdecode(file_bytes), p)]
        if b"\xe9" not in file_bytes:  # a UTF-8 name is the attribute itself, quotes and newline included
            assert s["data-file"] == row["file"]
        assert s["value"] == s["data-original"] == shown(row, field)
        crop = cv2.imread(str(crop_path(scanned["crops"], row["file"], p, field)), cv2.IMREAD_GRAYSCALE)
        mime, data = s["img"].removeprefix("data:").split(";base64,")
        shown_crop = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert mime in ("image/jpeg", "image/png") and shown_crop.shape == crop.shape
        assert np.abs(shown_crop.astype(int) - crop).mean() < 2  # the field's own crop, barely recompressed
    text = out.read_text(encoding="utf-8")
    assert page.scripts == 1 and "<img src=x" not in text  # the markup in a file name stays text
    assert "default-src 'none'" in page.csp and "http://" not in text and "https://" not in text
    assert "broken.png" in text and "not an image" in text  # pages with an error are listed


def test_review_all_lists_every_field_of_every_readable_page(scanned, tmp_path: Path):
    page = review(scanned, tmp_path / "all.html", "--all", results=scanned["csv"])
    assert len(page.sections) == 4 * len(FIELDS)


def test_review_shows_alternatives_and_raw_and_escapes_hostile_values(scanned, tmp_path: Path):
    rows = jsonl_rows(scanned["jsonl"])
    row = next(r for r in rows if not r["error"])
    row["NOM"] = '"><script>window.pwned=1</script>'
    row["NOM_confidence"] = 0.01
    row["NOM_alternatives"] = ["DUPOND", "<b onclick=x>DUPONT</b>", "DUPOND"]
    row["NOM_raw"] = "dup0nd"
    results = tmp_path / "hostile.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    page = review(scanned, tmp_path / "hostile.html", results=results)
    first = page.sections[0]
    assert first["data-field"] == "NOM" and first["value"] == row["NOM"]
    assert first["alts"] == ["DUPOND", "<b onclick=x>DUPONT</b>"]  # deduplicated, kept as text
    text = (tmp_path / "hostile.html").read_text(encoding="utf-8")
    assert page.scripts == 1 and "<b onclick" not in text and "dup0nd" in text


def test_review_refuses_a_crops_folder_of_another_scan(scanned, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = runner.invoke(app, ["review", str(scanned["jsonl"]), "--crops", str(empty), "--out", str(tmp_path / "r.html")])
    assert run.exit_code == 2 and "--crops folder" in run.output
    assert not (tmp_path / "r.html").exists()


def write_corrections(path: Path, lines: list[tuple[str, int, str, str]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["file", "page", "field", "value"])
    writer.writerows(lines)
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogateescape"))
    return path


def test_apply_normalizes_corrections_and_leaves_everything_else_as_read(scanned, tmp_path: Path):
    before = csv_rows(scanned["csv"])
    header, body = before[0], before[1:]
    col = {c: i for i, c in enumerate(header)}
    readable = [r for r in body if not r[col["error"]]]
    a, b, c = readable[0], readable[1], readable[2]  # a: all fields confirmed; b: one left doubtful; c: bad date
    fixes = [(a[0], 1, "NOM", "  durand-lefèvre "), (a[0], 1, "PRENOM", a[col["PRENOM"]]), (a[0], 1, "DATE", "1/2/2003"),
             (b[0], 1, "NOM", "Garcia"), (c[0], 1, "DATE", "31/02/2011")]
    corrections = write_corrections(tmp_path / "corrections.csv", fixes)
    out = tmp_path / "final.csv"
    run = runner.invoke(app, ["apply", str(scanned["csv"]), str(corrections), "--out", str(out), "--review-threshold", STRICT])
    assert run.exit_code == 0, run.output
    assert "impossible date" in run.output
    after = csv_rows(out)
    assert after[0] == header + ["corrected"]
    final = {r[0]: r for r in after[1:]}
    assert len(final) == len(body)
    fa, fb, fc = final[a[0]], final[b[0]], final[c[0]]
    assert (fa[col["NOM"]], fa[col["PRENOM"]], fa[col["DATE"]]) == ("DURAND-LEFÈVRE", a[col["PRENOM"]], "2003-02-01")
    assert fa[col["NOM_confidence"]] == fa[col["PRENOM_confidence"]] == fa[col["DATE_confidence"]] == "1.0"
    assert fa[-1] == "NOM;DATE" and fa[col["needs_review"]] == "False"  # PRENOM confirmed, not changed
    assert fb[col["NOM"]] == "GARCIA" and fb[-1] == "NOM"
    assert fb[col["needs_review"]] == "True"  # its PRENOM and DATE are still below the threshold
    assert fc[col["DATE"]] == "31/02/2011" and fc[col["needs_review"]] == "True"  # invalid: raw text, still flagged
    touched = {("NOM", a[0]), ("PRENOM", a[0]), ("DATE", a[0]), ("NOM", b[0]), ("DATE", c[0])}
    for row in body:  # every other cell byte for byte as scan wrote it
        for name, i in col.items():
            field = name.removesuffix("_confidence")
            if (field, row[0]) in touched or (name == "needs_review" and row[0] in (a[0], b[0], c[0])):
                continue
            assert final[row[0]][i] == row[i], (row[0], name)
        if row[0] not in (a[0], b[0], c[0]):
            assert final[row[0]][-1] == ""


def test_apply_rejects_a_correction_for_an_unknown_row_or_field(scanned, tmp_path: Path):
    row = next(r for r in jsonl_rows(scanned["jsonl"]) if not r["error"])
    corrections = write_corrections(tmp_path / "c.csv", [(row["file"], 1, "NOM", "X"), ("ghost.pdf", 3, "NOM", "Y"),
                                                         (row["file"], 1, "SURNAME", "Z"), (row["file"], 2, "NOM", "W")])
    out = tmp_path / "final.json"
    run = runner.invoke(app, ["apply", str(scanned["jsonl"]), str(corrections), "--out", str(out)])
    assert run.exit_code == 2
    assert "line 3" in run.output and "ghost.pdf" in run.output and "page 3" in run.output
    assert "line 4" in run.output and "SURNAME" in run.output and "line 5" in run.output
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("name,value\nX,Y\n")
    run = runner.invoke(app, ["apply", str(scanned["jsonl"]), str(bad), "--out", str(out)])
    assert run.exit_code == 2 and "file,page,field,value" in run.output and not out.exists()


def test_apply_jsonl_to_json_keeps_types_and_updates_raw(scanned, tmp_path: Path):
    rows = jsonl_rows(scanned["jsonl"])
    for r in rows:
        r["NOM_raw"] = r["NOM"].lower()
    results = tmp_path / "with_raw.jsonl"
    results.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8", "surrogateescape"))
    target = next(r for r in rows if not r["error"] and b"\xe9" in os.fsencode(r["file"]))  # the non-UTF-8 name
    corrections = write_corrections(tmp_path / "c.csv", [(target["file"], 1, "NOM", "Lefèvre")])
    out = tmp_path / "final.json"
    run = runner.invoke(app, ["apply", str(results), str(corrections), "--out", str(out)])
    assert run.exit_code == 0, run.output
    final = json.loads(out.read_text(encoding="utf-8", errors="surrogateescape"))
    assert len(final) == len(rows)
    for before, after in zip(rows, final):
        if before["file"] == target["file"]:
            assert (after["NOM"], after["NOM_raw"], after["NOM_confidence"], after["corrected"]) == ("LEFÈVRE", "Lefèvre", 1.0, "NOM")
            assert {k: v for k, v in after.items() if not k.startswith("NOM") and k not in ("needs_review", "corrected")} == \
                   {k: v for k, v in before.items() if not k.startswith("NOM") and k != "needs_review"}
        else:
            assert after == {**before, "corrected": ""}


def test_results_read_back_as_scan_meant_them(tmp_path: Path):
    """Types restored; the `'` a CSV writer puts before formula-looking text (CSV injection) removed."""
    from formreader.results import read_results

    path = tmp_path / "r.csv"
    path.write_bytes(b'file,page,NOM,DATE,NOM_confidence,DATE_confidence,needs_review,alignment,error\r\n'
                     b"'=x.png,2,'-DUPONT,'+12/03,0.5,0.25,True,0.9,\r\n"
                     b'"a\r\nb\xe9.png",1,\xe2\x80\xa8O\'NEIL,2011-03-12,1.0,1.0,False,1.0,oops\r\n')
    results = read_results(path)
    assert results.field_names == ["NOM", "DATE"]
    assert results.rows[0] == {"file": "=x.png", "page": 2, "NOM": "-DUPONT", "DATE": "+12/03", "NOM_confidence": 0.5,
                               "DATE_confidence": 0.25, "needs_review": True, "alignment": 0.9, "error": ""}
    assert os.fsencode(results.rows[1]["file"]) == b"a\r\nb\xe9.png" and results.rows[1]["NOM"] == "\u2028O'NEIL"


def test_review_threshold_picks_the_fields(scanned, tmp_path: Path):
    """Doubtful fields by the review threshold on any page; a flagged page with none doubtful shows all its fields."""
    rows = jsonl_rows(scanned["jsonl"])
    readable = [r for r in rows if not r["error"]]
    readable[0]["needs_review"] = False  # e.g. scanned with a laxer threshold than this review's
    results = tmp_path / "mixed.jsonl"
    results.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8", "surrogateescape"))
    strict = review(scanned, tmp_path / "strict.html", results=results)
    keys = {(base64.b64decode(s["data-file-bytes"]), s["data-field"]) for s in strict.sections}
    assert {f for b, f in keys if b == os.fsencode(readable[0]["file"])} == {
        f for f in FIELDS if readable[0][f + "_confidence"] < float(STRICT)}
    run = runner.invoke(app, ["review", str(results), "--crops", str(scanned["crops"]), "--out", str(tmp_path / "lax.html"),
                              "--review-threshold", "0"])
    assert run.exit_code == 0, run.output
    lax = Page((tmp_path / "lax.html").read_text(encoding="utf-8"))
    expected = 0
    for r in readable:  # nothing is below 0: a date scan could not read is still doubtful, else a flagged page shows all
        bad_dates = int(bool(r["DATE"]) and not ISO.match(r["DATE"]))
        expected += bad_dates or (len(FIELDS) if r["needs_review"] else 0)
    assert len(lax.sections) == expected and expected >= 2 * len(FIELDS)
