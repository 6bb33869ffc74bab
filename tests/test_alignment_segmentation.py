"""Alignment under scan perturbations and printed-ink removal, on two different templates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from formreader.align import Aligner, AlignerSettings
from formreader.preprocess import FAINT_BLANK_CONFIDENCE
from formreader.render import template_from_layout
from formreader.segment import cut_fields
from formreader.template import Layout, Template
from tests.forms import SECOND_LAYOUT, Scan, fill, scan

VALUES = {"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"}
PERTURBATIONS = {
    "clean": Scan(),
    "rot+5 scale+8% shift+5%": Scan(angle=5, scale=1.08, shift=(0.05, 0.05)),
    "rot-5 scale-8% blur noise jpeg": Scan(angle=-5, scale=0.92, shift=(-0.05, -0.03), blur=5, noise=12, jpeg=30),
    "150dpi rot+3 noisy": Scan(angle=3, dpi_factor=0.75, blur=3, noise=8, jpeg=40),
    "300dpi rot-4": Scan(angle=-4, dpi_factor=1.5, scale=1.05),
}


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


def test_pale_writing_in_a_box_is_sent_to_review_not_called_blank(template: Template):
    import cv2

    page = fill(template, VALUES)
    rng = np.random.default_rng(2)
    page = np.clip(page.astype(float) * 0.88 + rng.normal(0, 3, page.shape), 0, 255).astype(np.uint8)  # grey paper, noise
    spec = next(f for f in template.layout.fields if f.name not in VALUES)
    x0, _, _, y1 = template.mm_rect(spec.value_mm, 0.0)
    pale = page.copy()
    cv2.putText(pale, "CE2", (x0 + 20, y1 - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 190, 2)  # paper is ~224
    crops = {c.name: c for c in cut_fields(pale, template)}
    assert crops[spec.name].blank and crops[spec.name].blank_confidence == FAINT_BLANK_CONFIDENCE
    untouched = {c.name: c for c in cut_fields(page, template)}
    assert untouched[spec.name].blank_confidence == 1.0  # noisy grey paper alone stays surely blank


def test_a_blank_form_scanned_badly_stays_surely_blank(template: Template):
    # The pale-ink check must not send blank boxes to review: JPEG, blur, noise and rotation
    # leave no stroke 20 levels darker than the paper once the printed ink is erased.
    scanned = scan(template.blank, PERTURBATIONS["rot-5 scale-8% blur noise jpeg"], seed=0)
    result = Aligner(template).align(scanned)
    assert result.ok
    assert all(c.blank_confidence == 1.0 for c in cut_fields(result, template))


def test_a_page_the_first_try_cannot_register_gets_a_denser_try(template: Template, handwriting_fonts: Path):
    # Too few keypoints on the first try (a stand-in for the real case: a 150 dpi scan whose 600
    # keypoints gave 18 matches and 3 consistent ones); the denser retry registers the page.
    page = scan(fill(template, VALUES), PERTURBATIONS["150dpi rot+3 noisy"], seed=1)
    sparse = AlignerSettings(features=30, retry_features=0)
    assert not Aligner(template, sparse).align(page).ok
    retried = Aligner(template, replace(sparse, retry_features=2400)).align(page)
    assert retried.ok and retried.score > 0.8
