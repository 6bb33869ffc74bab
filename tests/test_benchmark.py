"""The benchmark: metric values on hand-made truths, set loading, report files, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from rapidfuzz.distance import Levenshtein
from typer.testing import CliRunner

from formreader.benchmark import tesseract
from formreader.benchmark.metrics import (
    Item,
    cer,
    coverage_curve,
    threshold_for,
    review_split,
    score,
    score_items,
)
from formreader.benchmark.sets import CropSet, FormSet, load_set, normalize_truth
from formreader.cli import app
from formreader.errors import InputError
from formreader.recognize.predictor import Reading
from formreader.records import Timings

runner = CliRunner()
FIELDS = ["NOM", "PRENOM", "DATE", "CLASSE"]


# --- metrics -------------------------------------------------------------------------------

def test_cer_and_exact_match_on_hand_made_pairs():
    assert cer("MARTN", "MARTIN") == pytest.approx(1 / 6)
    assert cer("", "") == 0.0 and cer("X", "") == 1.0
    s = score([("MARTIN", "MARTIN"), ("DUPONT", "DUPOND"), ("JEAN PAUL", "JEAN PIERRE"), ("", ""), ("", "LEA")])
    assert s.n == 5
    assert s.exact_match == pytest.approx(2 / 5)
    # 0 + 1 + 5 (PAUL -> PIERRE: 3 substitutions, 2 insertions) + 0 + 3 edits over 6 + 6 + 9 truth characters
    assert s.cer == pytest.approx(9 / 21)
    # word edits: 0 + 1 + 1 + 0 + 1 over 1 + 1 + 2 + 0 + 0 truth words
    assert s.wer == pytest.approx(3 / 4)
    # blanks: truths 4 and 5 are blank; read as blank: 4 only -> precision 1/1, recall 1/2
    assert s.blank_precision == pytest.approx(1.0)
    assert s.blank_recall == pytest.approx(0.5)
    assert s.blanks == 2


def test_blank_metrics_are_none_without_blanks():
    s = score([("A", "A"), ("B", "C")])
    assert s.blank_precision is None and s.blank_recall is None
    assert score([]).n == 0


def test_per_field_and_overall_scores():
    items = [Item("p1", "NOM", "MARTIN", "MARTIN", 0.9, False), Item("p1", "DATE", "2010-01-02", "2010-01-03", 0.9, False),
             Item("p2", "NOM", "LEA", "LEO", 0.9, False), Item("p2", "DATE", "2011-05-06", "2011-05-06", 0.9, False)]
    per_field, overall = score_items(items, ["NOM", "DATE"])
    assert per_field["NOM"].exact_match == 0.5 and per_field["DATE"].exact_match == 0.5
    assert per_field["DATE"].cer == pytest.approx(1 / 20)
    assert overall.exact_match == 0.5 and overall.n == 4


def _page(key: str, conf: float, correct: bool, review: bool) -> list[Item]:
    truth = "MARTIN"
    return [Item(key, "NOM", truth, truth if correct else "MARTN", conf, review, page_key=key)]


def test_coverage_curve_rewards_honest_confidence():
    # Confident pages are right, unsure pages wrong: keeping the confident half is 100 % right.
    items = [i for k in range(10) for i in _page(f"p{k}", 0.9 if k < 5 else 0.2, k < 5, k >= 5)]
    curve = coverage_curve(items, steps=10)
    assert curve[-1].coverage == 1.0 and curve[-1].accuracy == pytest.approx(0.5)
    half = next(p for p in curve if p.coverage == pytest.approx(0.5))
    assert half.accuracy == 1.0
    split = review_split(items)
    assert split["flagged"] == 5 and split["coverage"] == 0.5
    assert split["accuracy_kept"] == 1.0 and split["accuracy_flagged"] == 0.0 and split["accuracy_all"] == 0.5


def test_threshold_for_a_target_keeps_pages_fully_right():
    # Pages at 0.9 are right, one at 0.6 wrong, pages at 0.3 right: a threshold of 0.9 keeps the
    # sure half all right; nothing lower reaches 98 %.
    items = [i for k in range(6) for i in _page(f"p{k}", 0.9 if k < 3 else (0.6 if k == 3 else 0.3), k != 3, False)]
    point = threshold_for(items, 0.98)
    assert point.threshold == 0.9 and point.coverage == 0.5 and point.units_right == 1.0
    assert threshold_for(items, 0.8).coverage == 1.0  # 5 of 6 pages right
    assert threshold_for([i for i in items if not i.correct], 0.98) is None
    curve = coverage_curve(items, steps=6)
    assert curve[-1].units_right == pytest.approx(5 / 6)


def test_page_confidence_is_its_least_sure_field():
    items = [Item("a", "NOM", "X", "X", 0.95, False, page_key="a"), Item("a", "DATE", "Y", "Z", 0.1, False, page_key="a"),
             Item("b", "NOM", "X", "X", 0.5, False, page_key="b"), Item("b", "DATE", "Y", "Y", 0.5, False, page_key="b")]
    first = coverage_curve(items, steps=2)[0]
    assert first.coverage == 0.5 and first.threshold == 0.5 and first.accuracy == 1.0


def test_truth_normalization_matches_the_pipeline():
    assert normalize_truth("Jean-Pierre ", "text") == "JEAN-PIERRE"
    assert normalize_truth("2011-03-05", "date") == "2011-03-05"
    assert normalize_truth("05/03/2011", "date") == "2011-03-05"
    assert normalize_truth("", "date") == ""


# --- sets ------------------------------------------------------------------------------------

def _crop_set(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    rows = [("a.png", "MARTIN", "val"), ("b.png", "EMPTY", "val"), ("c.png", "UNREADABLE", "val"), ("d.png", "LEA", "train")]
    for name, text, _ in rows:
        img = np.full((40, 200), 255, np.uint8)
        if text not in ("EMPTY",):
            cv2.putText(img, text[:6], (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2)
        cv2.imwrite(str(folder / "images" / name), img)
    pd.DataFrame(rows, columns=["FILENAME", "IDENTITY", "SPLIT"]).to_csv(folder / "labels.csv", index=False)
    return folder


def test_load_set_recognizes_both_kinds(tmp_path):
    crops = load_set(_crop_set(tmp_path / "crops"), FIELDS)
    assert isinstance(crops, CropSet) and crops.skipped == 1
    assert [c.truth for c in crops.items] == ["MARTIN", "", "LEA"]
    assert len(load_set(tmp_path / "crops", FIELDS, split="val").items) == 2
    forms = tmp_path / "forms"
    forms.mkdir()
    cv2.imwrite(str(forms / "f.png"), np.full((10, 10), 255, np.uint8))
    pd.DataFrame([{"FILE": "f.png", "PAGE": 1, "NOM": "A", "DATE": "", "EXTRA": "x"}]).to_csv(forms / "truth.csv", index=False)
    fs = load_set(forms, FIELDS)
    assert isinstance(fs, FormSet) and fs.fields == ["NOM", "DATE"] and fs.ignored == ["EXTRA"]
    assert fs.truth[("f.png", 1)] == {"NOM": "A", "DATE": ""}
    with pytest.raises(InputError):
        load_set(tmp_path, FIELDS)  # neither truth.csv nor labels.csv


def test_benchmark_cli_errors_exit_2(tmp_path, tiny_model):
    assert runner.invoke(app, ["benchmark", str(tmp_path), "--model", str(tiny_model)]).exit_code == 2
    crops = _crop_set(tmp_path / "c")
    result = runner.invoke(app, ["benchmark", str(crops), "--model", str(tiny_model), "--compare", "abbyy"])
    assert result.exit_code == 2


# --- end to end ------------------------------------------------------------------------------

def _check_report(path: Path, fields: list[str]) -> dict:
    report = json.loads(path.read_text())
    for name in fields:
        assert 0.0 <= report["fields"][name]["exact_match"] <= 1.0
        assert report["fields"][name]["cer"] >= 0.0
    assert 0.0 <= report["overall"]["exact_match"] <= 1.0 and report["overall"]["cer"] >= 0.0
    assert report["throughput"]["crops_per_s"] > 0
    assert "pages_per_s" in report["throughput"]
    assert set(report["stages"]) - {"ingest", "align", "segment", "recognize", "decode"} <= {"recognize: second opinion", "recognize: field experts"}
    assert {"ingest", "align", "segment", "recognize", "decode"} <= set(report["stages"])
    assert report["memory"]["peak_rss_mb"] > 0
    for key in ("fields_png", "coverage_png", "errors_html", "items_csv"):
        assert Path(report["files"][key]).is_file()
    assert Path(report["files"]["fields_png"]).read_bytes()[:4] == b"\x89PNG"
    return report


def test_crop_set_benchmark_report(tmp_path, tiny_model):
    crops = _crop_set(tmp_path / "crops")
    out = tmp_path / "rep" / "crops.json"
    result = runner.invoke(app, ["benchmark", str(crops), "--model", str(tiny_model), "--report", str(out), "--compare", "tesseract"])
    assert result.exit_code == 0, result.output
    report = _check_report(out, ["NAME"])
    assert report["kind"] == "crops" and report["fields"]["NAME"]["n"] == 3  # UNREADABLE skipped
    assert report["fields"]["NAME"]["blanks"] == 1  # EMPTY expects ""
    assert report["throughput"]["pages_per_s"] is None
    html = Path(report["files"]["errors_html"]).read_text()
    assert "<table>" in html and "MARTIN" in html
    items = pd.read_csv(report["files"]["items_csv"], dtype=str, keep_default_na=False)
    assert sorted(items.truth) == ["", "LEA", "MARTIN"] and "tesseract" in items.columns or not tesseract.available()


@pytest.fixture(scope="module")
def form_set(tmp_path_factory, shared_dir) -> Path:
    from formreader.synth import (
        FillSettings,
        SetSpec,
        build_filler,
        preset,
        write_form_set,
    )
    from formreader.template import Template

    folder = tmp_path_factory.mktemp("forms")
    filler = build_filler(Template.load(), shared_dir, "fonts", settings=FillSettings(blank_rate=0.0, optional_rate=0.0))
    write_form_set(folder, filler, SetSpec(pages=4, preset=preset("mild"), formats=("pdf", "jpg", "png", "tif"), max_pdf_pages=1, dpi=150, seed=2))
    return folder


def test_form_set_benchmark_report_with_tesseract(tmp_path, tiny_model, form_set):
    out = tmp_path / "forms.json"
    args = ["benchmark", str(form_set), "--model", str(tiny_model), "--report", str(out), "--compare", "tesseract"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = _check_report(out, FIELDS)
    assert report["kind"] == "forms" and report["pages"] == 4 and report["crops"] == 16
    assert report["alignment"]["failed_pages"] == 0 and report["alignment"]["min"] >= 0.55
    assert report["fields"]["CLASSE"]["blanks"] == 4  # optional field never filled here
    html = Path(report["files"]["errors_html"]).read_text()
    assert html.count('src="data:image/png;base64,') >= 1
    if tesseract.available():
        base = report["baselines"]["tesseract"]
        assert set(base["fields"]) == set(FIELDS) and base["throughput"]["crops_per_s"] > 0
        assert "tesseract" in html
    else:
        assert report["baselines"] == {}


class _Always:
    """A recognizer that reads every crop as the same name."""

    batch_size = 64

    def predict(self, crops, kinds=None):
        return [Reading("DUPONT", 0.9) for _ in crops], Timings()


def test_form_benchmark_pairs_readings_with_their_truth(tmp_path, form_set, monkeypatch):
    # Rewrite the truth: page 1 of the first file says DUPONT, the rest something else.
    truth = pd.read_csv(form_set / "truth.csv", dtype=str, keep_default_na=False)
    truth["NOM"] = ["DUPONT"] + ["MARTIN"] * (len(truth) - 1)
    moved = tmp_path / "set"
    moved.mkdir()
    for f in form_set.iterdir():
        if f.name != "truth.csv":
            (moved / f.name).write_bytes(f.read_bytes())
    truth.to_csv(moved / "truth.csv", index=False)
    monkeypatch.setattr("formreader.commands.benchmark.load_reader", lambda *a, **k: _Always())
    from formreader.commands.benchmark import run_benchmark
    from formreader.config import Config

    outcome = run_benchmark(moved, Config(), None)
    nom = outcome.report["fields"]["NOM"]
    assert nom["exact_match"] == pytest.approx(1 / len(truth))
    wrong = Levenshtein.distance("DUPONT", "MARTIN")
    assert nom["cer"] == pytest.approx(wrong * (len(truth) - 1) / (6 * len(truth)), abs=1e-4)
    # "DUPONT" is no date: every DATE is invalid, so every page is sent to review.
    assert outcome.report["review"]["flagged"] == len(truth)
    assert outcome.report["fields"]["DATE"]["exact_match"] == 0.0
    # The blank CLASSE boxes never reach the recognizer: the pipeline reads them as blank.
    assert outcome.report["fields"]["CLASSE"]["blank_recall"] == 1.0
