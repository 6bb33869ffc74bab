"""Alignment under scan perturbations and printed-ink removal, on two different templates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from formreader.align import Aligner, AlignerSettings
from formreader.benchmark.alignment import _font
from formreader.fields import make_field
from formreader.preprocess import FAINT_BLANK_CONFIDENCE, blank_confidence, darken_pale_writing
from formreader.render import template_from_layout
from formreader.recognize.ensemble import load_reader
from formreader.recognize.grammar import Grammar
from formreader.recognize.predictor import RecognizerSettings
from formreader.segment import cut_fields, draw_separators, remove_rules
from formreader.template import Layout, Template
from tests.forms import SECOND_LAYOUT, Scan, fill, scan

VALUES = {"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"}
PERTURBATIONS = {
    "clean": Scan(),
    "rot+5 scale+8% shift+5%": Scan(angle=5, scale=1.08, shift=(0.05, 0.05)),
    "rot-5 scale-8% blur noise jpeg": Scan(angle=-5, scale=0.92, shift=(-0.05, -0.03), blur=5, noise=12, jpeg=30),
    "150dpi rot+3 noisy": Scan(angle=3, dpi_factor=0.75, blur=3, noise=8, jpeg=40),
    "300dpi rot-4": Scan(angle=-4, dpi_factor=1.5, scale=1.05),
    # A similarity cannot undo these: the homography is taken where it finds more of the form.
    "sheet feeder stretch 3%": Scan(stretch=1.03, noise=5),
    "photo at a slant": Scan(tilt=0.06, angle=2, noise=5),
}


@pytest.fixture(scope="module")
def reader():
    """The default reader (CRNN, PP-OCRv5, date expert), loaded once for the tests that read."""
    return load_reader(None, RecognizerSettings(device="cpu", threads=2))


@pytest.fixture(scope="module", params=["fiche-a", "second"])
def template(request) -> Template:
    if request.param == "fiche-a":
        return Template.load()
    return template_from_layout(Layout.from_dict(SECOND_LAYOUT))


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_alignment_recovers_the_page(template: Template, name: str, handwriting_fonts: Path):
    page = fill(template, VALUES)
    result = Aligner(template).align(scan(page, PERTURBATIONS[name], seed=1))
    assert result.ok and result.score > 0.8
    # The registered page lands on the original: field boxes line up to within a few pixels.
    for spec in template.layout.fields:
        x0, y0, x1, y1 = template.mm_rect(spec.value_mm, 2.0)
        a = page[y0:y1, x0:x1].astype(float)
        b = result.image[y0:y1, x0:x1].astype(float)
        if a.std() > 5:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.6, spec.name


def test_fields_filled_and_left_blank_are_told_apart(template: Template):
    crops = {c.name: c for c in cut_fields(fill(template, VALUES), template)}
    assert set(crops) == set(template.layout.field_names)
    for name, crop in crops.items():
        assert crop.blank == (name not in VALUES), name


def test_printed_ink_is_removed_from_every_field(template: Template):
    # Labels, underlines, boxes and printed date separators all vanish from a blank form's crops.
    for crop in cut_fields(template.blank, template):
        assert crop.blank, crop.name
        assert (crop.image < 128).mean() < 0.001, crop.name


def test_a_different_document_is_flagged(template: Template):
    rng = np.random.default_rng(0)
    other = np.full_like(template.blank, 255)
    other[rng.random(other.shape) < 0.02] = 0  # text-like clutter, nothing of the form
    assert not Aligner(template).align(other).ok
    assert not Aligner(template).align(np.full_like(template.blank, 255)).ok


@pytest.mark.parametrize("shape", [(1, 1700), (2, 2400), (1700, 1), (20, 20)])
def test_a_sliver_of_a_page_is_flagged_not_raised(template: Template, shape: tuple[int, int]):
    # A damaged PDF can render one row of pixels; ORB cannot build its pyramid on that (OpenCV 5).
    result = Aligner(template).align(np.full(shape, 255, np.uint8))
    assert not result.ok and "too small" in result.note


def test_the_wrong_template_is_flagged():
    fiche = Template.load()
    second = template_from_layout(Layout.from_dict(SECOND_LAYOUT))
    assert not Aligner(second).align(fill(fiche, VALUES)).ok


def test_pale_writing_in_a_box_is_darkened_and_read_not_called_blank(template: Template, reader):
    import cv2

    page = fill(template, VALUES)
    rng = np.random.default_rng(2)
    page = np.clip(page.astype(float) * 0.88 + rng.normal(0, 3, page.shape), 0, 255).astype(np.uint8)  # grey paper, noise
    spec = next(f for f in template.layout.fields if f.name not in VALUES)
    x0, _, _, y1 = template.mm_rect(spec.value_mm, 0.0)
    pale = page.copy()
    text = "CE2" if spec.choices else "PARIS"  # a class (fiche-a CLASSE) or a town (inscription-b VILLE)
    cv2.putText(pale, text, (x0 + 20, y1 - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 190, 2)  # paper is ~224
    crop = {c.name: c for c in cut_fields(pale, template)}[spec.name]
    assert not crop.blank and (crop.image < 170).sum() > 100  # strokes of 190 made ink
    (reading,), _ = reader.predict([crop.image], [Grammar(crop.kind, crop.choices)])
    assert reading.text == text
    untouched = {c.name: c for c in cut_fields(page, template)}
    assert untouched[spec.name].blank_confidence == 1.0  # noisy grey paper alone stays surely blank


def test_pale_letters_become_ink_and_line_remnants_do_not():
    paper = np.full((80, 300), 220, np.uint8)
    assert darken_pale_writing(paper) is paper
    pale = paper.copy()
    for x in (40, 80):  # two pale letters (an L each): 25 levels below the paper, ink needs 40
        pale[30:60, x : x + 3] = 195
        pale[57:60, x : x + 25] = 195
    assert blank_confidence(pale) == FAINT_BLANK_CONFIDENCE
    dark = darken_pale_writing(pale)
    assert blank_confidence(dark) is None and int(dark[45, 41]) == 170 and int(dark[10, 10]) == 220
    remnant = paper.copy()
    remnant[69:72, 20:280] = 190  # what a blank box keeps of its printed bottom line: 3 px tall
    assert blank_confidence(remnant) == FAINT_BLANK_CONFIDENCE and darken_pale_writing(remnant) is remnant
    inked = paper.copy()
    inked[30:60, 40:43] = 60
    inked[30:60, 80:83] = 60
    assert darken_pale_writing(inked) is inked  # real ink: nothing to do


def test_a_blank_form_scanned_badly_stays_surely_blank(template: Template):
    # The pale-ink check must not send blank boxes to review: JPEG, blur, noise and rotation
    # leave no stroke 20 levels darker than the paper once the printed ink is erased.
    scanned = scan(template.blank, PERTURBATIONS["rot-5 scale-8% blur noise jpeg"], seed=0)
    result = Aligner(template).align(scanned)
    assert result.ok
    assert all(c.blank_confidence == 1.0 for c in cut_fields(result, template))


def test_a_slanted_page_fit_a_few_pixels_off_is_polished_back_into_place(template: Template):
    import cv2

    from formreader.align import _shrink, _to_small, _warp

    aligner = Aligner(template)
    slant = Scan(tilt=0.06, angle=2, noise=5)
    filled = fill(template, VALUES)
    page = scan(filled, slant, seed=1)
    h, w = filled.shape
    # The page's true place, from the scan's own rotation and slant, in working pixels:
    turn = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), slant.angle, slant.scale), [0.0, 0.0, 1.0]])
    d = slant.tilt * w / 2
    tilt = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), np.float32([[d, 0], [w - d, 0], [w, h], [0, h]]))
    k = max(1, round(page.shape[1] / aligner._small_size[0]))
    small = _shrink(page, k)
    truth = _to_small(aligner._k_t) @ np.linalg.inv(tilt @ turn) @ np.linalg.inv(_to_small(k))
    # A keypoint fit left 3 working pixels off, as on the boxed form at a slant:
    off = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]]) @ truth
    fit = (off, 50, aligner._score(_warp(small, off, aligner._small_size)))
    polished, _, score = aligner._refine(small, fit, "homography")
    assert score > fit[2]
    for spec in template.layout.fields:  # every field box's centre lands back within a fifth of a pixel
        x0, y0, x1, y1 = template.mm_rect(spec.value_mm, 0)
        centre = _to_small(aligner._k_t) @ np.array([(x0 + x1) / 2, (y0 + y1) / 2, 1.0])
        at = [np.linalg.inv(m) @ centre for m in (polished, truth)]
        assert np.abs(at[0][:2] / at[0][2] - at[1][:2] / at[1][2]).max() < 0.2, spec.name


def test_a_page_the_first_try_cannot_register_gets_a_denser_try(template: Template, handwriting_fonts: Path):
    # Too few keypoints on the first try (a stand-in for the real case: a 150 dpi scan whose 600
    # keypoints gave 18 matches and 3 consistent ones); the denser retry registers the page.
    page = scan(fill(template, VALUES), PERTURBATIONS["150dpi rot+3 noisy"], seed=1)
    sparse = AlignerSettings(features=30, retry_features=0)
    assert not Aligner(template, sparse).align(page).ok
    retried = Aligner(template, replace(sparse, retry_features=2400)).align(page)
    assert retried.ok and retried.score > 0.8


# --- printed date separators drawn back -------------------------------------------------------------

def _groups(widths: list[tuple[int, int]], height: int = 60, width: int = 300) -> np.ndarray:
    """A light crop with a solid dark block (a group of digits) over each column range."""
    crop = np.full((height, width), 230, np.uint8)
    for a, b in widths:
        crop[15:45, a:b] = 30
    return crop


def _inked_runs(gray: np.ndarray) -> list[tuple[int, int]]:
    cols = np.flatnonzero((gray < 128).any(axis=0))
    runs, start = [], cols[0]
    for a, b in zip(cols, cols[1:]):
        if b > a + 1:
            runs.append((int(start), int(a)))
            start = b
    return runs + [(int(start), int(cols[-1]))]


def test_a_boxed_dates_erased_separators_come_back_as_slashes_with_the_gaps_closed():
    crop = _groups([(20, 60), (130, 170), (230, 290)])
    out = draw_separators(crop, [95.0, 200.0])
    runs = _inked_runs(out)
    assert len(runs) == 5  # day, slash, month, slash, year
    # Each gap is closed to a hand's spacing: about the digits' height, not the 70 px left by the form.
    assert all(b2 - a1 < 30 for (_, a1), (b2, _) in zip(runs, runs[1:]))
    assert out.shape[1] < crop.shape[1] - 60
    # The slashes lean forward like written ones: ink at the top right, at the bottom left.
    a, b = runs[1]
    stroke = out[:, a : b + 1] < 128
    top_cols = np.flatnonzero(stroke[16]); bottom_cols = np.flatnonzero(stroke[43])
    assert top_cols.mean() > bottom_cols.mean()
    # The groups' own ink is kept whole.
    assert (out < 128).sum() > (crop < 128).sum()


def test_a_separator_crossed_by_the_writing_or_outside_the_crop_is_left_alone():
    crop = _groups([(20, 120)])
    assert draw_separators(crop, [80.0]) is crop
    assert draw_separators(crop, [400.0, -5.0]) is crop
    blank = np.full((60, 300), 230, np.uint8)
    assert draw_separators(blank, [100.0]) is blank


def test_a_boxed_date_is_cut_with_its_separators_and_reads_as_written(reader):
    template = template_from_layout(Layout.from_dict(SECOND_LAYOUT))
    spec = next(f for f in template.layout.fields if f.slashes_mm)
    page = Image.fromarray(template.blank.copy())
    draw = ImageDraw.Draw(page)
    x, y, w, h = spec.value_mm
    s = template.px_per_mm
    cuts = [0.0, *spec.slashes_mm, w]
    for group, a in zip(("21", "07", "1994"), cuts):  # each group where a writer puts it: in its slot
        draw.text(((x + a + 3) * s, (y + 0.8 * h) * s), group, fill=20, font=_font(int(0.55 * h * s)), anchor="ls")
    crops = {c.name: c for c in cut_fields(np.asarray(page), template)}
    date = crops[spec.name]
    assert not date.blank
    x0, _, x1, _ = template.mm_rect(spec.value_mm, 2.0)
    assert date.image.shape[1] < (x1 - x0) - 10 * s  # closer together than the form's slots put them
    (reading,), _ = reader.predict([date.image], [spec.kind])
    assert make_field(spec.name, spec.kind, reading.text, reading.confidence).text == "1994-07-21"
    # A form whose date box prints no separators keeps its crop as cut.
    plain = template_from_layout(Layout.from_dict(
        dict(SECOND_LAYOUT, fields=[dict(f, slashes_mm=[]) for f in SECOND_LAYOUT["fields"]])))
    plain_crop = next(c for c in cut_fields(np.asarray(page), plain) if c.name == spec.name)
    assert plain_crop.image.shape[1] == x1 - x0


def test_edge_rule_leaves_the_middle_of_a_narrow_box_alone():
    """A box narrower than both edge bands together: a straight stroke in its middle (a 1) is
    writing, not a box side; a side at its very edge still goes."""
    crop = np.full((60, 50), 250, np.uint8)
    crop[10:50, 24:27] = 20  # the stroke of a 1, two thirds of the height
    crop[8:52, 1:3] = 20  # the box's left side, a few pixels in
    out = remove_rules(crop, edge=40)
    assert (out[10:50, 24:27] < 128).all()
    assert (out[8:52, 1:3] > 128).all()


def test_box_sides_registration_left_a_few_pixels_off_do_not_pass_for_writing():
    # A boxed form registered 5 px off sideways: the template mask (grown 0.35 mm, ~3 px) misses
    # each box's left and right sides. Blank boxes must still be surely blank, and a written
    # box's crop must hold its writing only.
    template = template_from_layout(Layout.from_dict(SECOND_LAYOUT))
    shifted = np.roll(fill(template, {"NOM": "DUPONT"}), 5, axis=1)
    crops = {c.name: c for c in cut_fields(shifted, template)}
    # (The date box's printed slashes, slanted, are not looked for: its crop is left out here.)
    boxed = [f.name for f in template.layout.fields if f.box and not f.slashes_mm]
    assert len(boxed) >= 3
    for name in boxed:
        if name != "NOM":
            assert crops[name].blank_confidence == 1.0, name
    nom = crops["NOM"].image
    edge = int(round(4.0 * template.px_per_mm))
    dark = nom < 128
    assert not dark[:, :edge].any() and not dark[:, -edge:].any()
    assert dark.any()  # the writing itself stays
