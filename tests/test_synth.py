"""The form-set generator: handwriting sources, scan simulation, set files and truth.csv."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from formreader.align import Aligner, AlignerSettings
from formreader.cli import app
from formreader.ingest import read_pages
from formreader.preprocess import ink_bbox
from formreader.synth import FillSettings, SetSpec, build_filler, preset, write_form_set
from formreader.synth.fonts import FontNames
from formreader.synth.formset import plan_files
from formreader.synth.handwriting import (
    MNIST_RESERVED,
    CropNames,
    Digits,
    clean_name_crop,
    holds_other_lines,
    write_digits,
)
from formreader.synth.scan import PRESETS, draw_params, simulate_scan
from formreader.template import Template

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
runner = CliRunner()


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


@pytest.fixture(scope="module")
def font_filler(template, shared_dir):
    return build_filler(template, shared_dir, "fonts", "reserved")


def test_presets_draw_within_their_ranges():
    rng = np.random.default_rng(0)
    for p in PRESETS.values():
        for _ in range(50):
            d = draw_params(p, rng)
            assert abs(d.angle) <= p.rotation_deg and abs(d.scale - 1) <= p.scale
            assert abs(d.dx) <= p.shift and abs(d.dy) <= p.shift
            assert p.jpeg_quality[0] <= d.quality <= p.jpeg_quality[1]
            assert 150 <= d.dpi <= 300
    assert PRESETS["hard"].rotation_deg == 5.0 and PRESETS["hard"].scale == 0.08 and PRESETS["hard"].shift == 0.05


def test_simulated_scan_has_the_drawn_resolution(template):
    rng = np.random.default_rng(1)
    params = draw_params(preset("hard"), rng)
    from dataclasses import replace

    out = simulate_scan(template.blank, replace(params, dpi=150.0), template.dpi, rng)
    assert out.dtype == np.uint8
    assert abs(out.shape[1] - template.blank.shape[1] * 150 / template.dpi) <= 1
    assert out.mean() < template.blank.mean()  # grey paper, noise: not the clean blank


def test_digits_come_from_the_reserved_mnist_slice(shared_dir):
    npz = shared_dir / "data/digits/mnist_train.npz"
    digits = Digits.load(npz, "reserved")
    raw = np.load(npz)
    assert len(digits.images) == 10_000
    assert np.array_equal(digits.images[0], raw["x"][MNIST_RESERVED][0])
    assert len(Digits.load(npz, "train").images) == 50_000
    ink = write_digits("12/05/2010", digits, np.random.default_rng(0), 48)
    assert ink.shape[0] >= 40 and ink.shape[1] > 5 * 40  # ten symbols side by side


def test_font_names_look_written_and_keep_their_text(shared_dir):
    fonts = FontNames.load(shared_dir / "fonts")
    rng = np.random.default_rng(3)
    ink = fonts.sample(rng, "NOM")
    assert ink.text in fonts.surnames
    assert ink.image.dtype == np.uint8 and ink.image.min() < 100 and ink.image.max() == 255
    assert ink_bbox(ink.image) is not None


def test_kaggle_crops_lose_their_printed_prefix(shared_dir):
    names = CropNames.load(shared_dir / "data/kaggle-names/dev", "val")
    labels = pd.read_csv(shared_dir / "data/kaggle-names/dev/labels.csv", dtype=str, keep_default_na=False)
    val = set(labels.loc[labels.SPLIT == "val", "IDENTITY"].str.upper())
    assert 220 <= len(names.inks) <= 260 and {i.text for i in names.inks} <= val
    assert names.excluded >= 50  # crops holding a neighbouring printed line of their form
    pezot = cv2.imread(str(shared_dir / "data/kaggle-names/dev/images/VALIDATION_0409.jpg"), cv2.IMREAD_GRAYSCALE)
    assert holds_other_lines(pezot)  # "CODE RNE / UAI : 0908585" over "NOM : PEZOT"; the trim kept the code
    # A crop made of "NOM :" then a name: the cleaned ink starts right of the colon.
    img = np.full((40, 300), 255, np.uint8)
    cv2.putText(img, "NOM", (4, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 2)
    cv2.rectangle(img, (44, 19), (47, 21), 0, -1)  # a colon spans the x-height, next to the M
    cv2.rectangle(img, (44, 25), (47, 27), 0, -1)
    cv2.putText(img, "PAUL", (150, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
    cleaned = clean_name_crop(img)
    assert cleaned is not None and cleaned.shape[1] < 100  # only PAUL is left


def test_a_crop_whose_printed_line_outgrows_the_writing_is_not_pasted():
    crop = np.full((36, 300), 255, np.uint8)
    cv2.putText(crop, "CODE 0908585", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 2)  # printed, cut at the top
    cv2.putText(crop, "PEZOT", (90, 33), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1)
    assert holds_other_lines(crop)
    foot = np.full((36, 300), 255, np.uint8)
    cv2.line(foot, (10, 1), (250, 1), 0, 2)  # the cut-off foot of the line above
    cv2.putText(foot, "PEZOT", (90, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
    assert not holds_other_lines(foot) and clean_name_crop(foot).shape[0] < 30


def test_plan_mixes_formats_and_pdf_page_counts():
    spec = SetSpec(pages=40, preset=preset("mild"), max_pdf_pages=3)
    plan = plan_files(spec, np.random.default_rng(0))
    assert sum(n for _, n in plan) == 40
    assert {f for f, _ in plan} == {"pdf", "jpg", "png", "tif"}
    assert all(n == 1 for f, n in plan if f != "pdf") and max(n for f, n in plan if f == "pdf") > 1


def test_form_set_files_truth_and_alignment(tmp_path, template, font_filler):
    summary = write_form_set(tmp_path, font_filler, SetSpec(pages=6, preset=preset("hard"), max_pdf_pages=3, seed=5))
    truth = pd.read_csv(tmp_path / "truth.csv", dtype=str, keep_default_na=False)
    assert list(truth.columns) == ["FILE", "PAGE", *template.layout.field_names]
    assert len(truth) == summary.pages == 6
    assert {Path(f).suffix for f in truth.FILE} == {".pdf", ".jpg", ".png", ".tif"}
    assert all(ISO.match(d) or d == "" for d in truth.DATE)
    assert (truth.NOM != "").sum() >= 5
    aligner = Aligner(template)
    for name, group in truth.groupby("FILE"):
        pages = read_pages(tmp_path / name)
        assert [p.page for p in pages] == sorted(int(p) for p in group.PAGE)
        for page in pages:
            assert not page.error
            result = aligner.align(page.image)
            assert result.ok and result.score >= AlignerSettings().min_score, (name, result.score)


def test_blank_and_optional_rates_control_the_truth(template, shared_dir):
    filler = build_filler(template, shared_dir, "fonts", settings=FillSettings(blank_rate=1.0, optional_rate=0.0))
    form = filler.fill(np.random.default_rng(0))
    assert set(form.truth.values()) == {""}
    assert np.array_equal(form.image, template.blank)  # nothing written
    filler = build_filler(template, shared_dir, "fonts", settings=FillSettings(blank_rate=0.0, optional_rate=1.0))
    form = filler.fill(np.random.default_rng(0))
    assert all(form.truth.values())


def test_optional_fields_get_values_a_real_form_holds_there(template, shared_dir):
    """A closed-list field (fiche-a CLASSE) gets listed classes; a free box (inscription-b VILLE,
    read as letters) gets places, never a class such as 5EME."""
    boxed = Template.load(Path(__file__).parents[1] / "formreader/assets/templates/inscription-b")
    settings = FillSettings(blank_rate=0.0, optional_rate=1.0)
    for tmpl, field in ((template, "CLASSE"), (boxed, "VILLE")):
        spec = next(f for f in tmpl.layout.fields if f.name == field)
        filler = build_filler(tmpl, shared_dir, "fonts", settings=settings)
        values = {filler.fill(np.random.default_rng(seed)).truth[field] for seed in range(12)}
        assert len(values) > 3
        if spec.choices:
            assert values <= set(spec.choices)
        else:
            assert not any(ch.isdigit() for v in values for ch in v), values


def test_synth_cli_writes_a_set_and_refuses_bad_options(tmp_path, shared_dir):
    out = tmp_path / "set"
    args = ["synth", str(out), "--pages", "2", "--names", "fonts", "--preset", "mild", "--formats", "jpg,png", "--dpi", "150", "--data-root", str(shared_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["form_0001.jpg", "form_0002.png", "set.json", "truth.csv"]
    assert runner.invoke(app, args).exit_code == 2  # never overwrite a set
    assert runner.invoke(app, ["synth", str(tmp_path / "x"), "--preset", "awful", "--data-root", str(shared_dir)]).exit_code == 2
    assert runner.invoke(app, ["synth", str(tmp_path / "y"), "--names", "nope", "--data-root", str(shared_dir)]).exit_code == 2
    assert runner.invoke(app, ["synth", str(tmp_path / "z"), "--formats", "gif", "--data-root", str(shared_dir)]).exit_code == 2
    assert runner.invoke(app, ["synth", str(tmp_path / "w"), "--data-root", str(tmp_path / "missing")]).exit_code == 2


def test_dates_go_between_printed_slashes(template, shared_dir):
    from formreader.render import template_from_layout
    from formreader.template import Layout

    raw = dict(template.layout.raw)
    raw["fields"] = [dict(f, slashes_mm=[18, 36]) if f.get("kind") == "date" else f for f in raw["fields"]]
    slashed = template_from_layout(Layout.from_dict(raw), dpi=200)
    filler = build_filler(slashed, shared_dir, "fonts", settings=FillSettings(blank_rate=0.0))
    form = filler.fill(np.random.default_rng(4))
    assert ISO.match(form.truth["DATE"])
    spec = next(f for f in slashed.layout.fields if f.kind == "date")
    x, y, w, h = spec.value_mm
    written = form.image < slashed.blank.astype(int) - 60  # new dark ink only
    for a, b in ((0, 18), (18, 36), (36, w)):  # DD, MM and YYYY each in their own slot
        x0, y0, x1, y1 = slashed.mm_rect((x + a + 1.0, y, b - a - 2.0, h))
        assert written[y0:y1, x0:x1].sum() > 50, (a, b)
    for cut in (18, 36):  # nothing hand-drawn over the printed separators
        x0, y0, x1, y1 = slashed.mm_rect((x + cut - 0.3, y, 0.6, h))
        assert written[y0:y1, x0:x1].sum() < 20
