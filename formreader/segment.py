"""Cut field crops from an aligned page and erase the form's printed ink from them.

The template's own printed ink (labels such as ``NOM :``, guide lines, boxes, printed date
separators) is known pixel for pixel, so it is masked out after a small dilation that absorbs
the residual misalignment. Long straight rules that survive (a slightly bent scan) are removed
by a morphological pass, so the recognizer sees handwriting only. A date whose separators the
form prints gets them back as slashes (`draw_separators`), so it reads like a written date.
"""

from __future__ import annotations

import cv2
import numpy as np

from formreader.align import Alignment
from formreader.preprocess import blank_confidence, darken_pale_writing, ink_mask, percentile_u8
from formreader.records import FieldCrop
from formreader.template import FieldSpec, Template

MARGIN_MM = 2.0  # handwriting overflows its box; keep a little around it
MASK_GROW_MM = 0.35
# Box sides left by registration are looked for this far inside the box, as straight vertical
# runs this share of the crop's height (a box spans about three quarters of it).
EDGE_MM = 2.0
EDGE_RULE_FRACTION = 0.5
SEPARATOR_INK = 40  # grey of the drawn-back date separators (as the training dates' printed ones)


def cut_fields(aligned: np.ndarray | Alignment, template: Template, margin_mm: float = MARGIN_MM) -> list[FieldCrop]:
    """Field crops from a page already in the template frame, or straight from an Alignment
    (which resamples only the field boxes)."""
    grow = max(1, int(round(MASK_GROW_MM * template.px_per_mm)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return [_cut(aligned, template, spec, margin_mm, kernel) for spec in template.layout.fields]


def _cut(aligned: np.ndarray | Alignment, template: Template, spec: FieldSpec, margin_mm: float, kernel: np.ndarray) -> FieldCrop:
    x0, y0, x1, y1 = template.mm_rect(spec.value_mm, margin_mm)
    crop = aligned.region(x0, y0, x1, y1) if isinstance(aligned, Alignment) else aligned[y0:y1, x0:x1].copy()
    printed = cv2.dilate(template.printed_ink[y0:y1, x0:x1], kernel)
    crop[printed > 0] = paper_level(crop)
    crop = remove_rules(crop, edge=int(round((margin_mm + EDGE_MM) * template.px_per_mm)))
    blank = blank_confidence(crop)
    if blank is not None:  # too little ink to be writing; pale writing is darkened and looked at again
        darker = darken_pale_writing(crop)
        if darker is not crop:
            crop, blank = darker, blank_confidence(darker)
    if spec.slashes_mm and blank is None:
        s = template.px_per_mm
        crop = draw_separators(crop, [(spec.value_mm[0] + dx) * s - x0 for dx in spec.slashes_mm])
    return FieldCrop(name=spec.name, kind=spec.kind, image=crop, blank_confidence=blank, choices=spec.choices)


def draw_separators(gray: np.ndarray, xs: list[float]) -> np.ndarray:
    """The date with its printed separators (erased with the rest of the form's ink) set back as
    the recognizers learnt dates: a clean slash in each gap at columns `xs`, the gap closed to a
    hand's spacing. Left alone, three far-apart groups read with or without spaces, and a slash
    drawn alone in a wide gap reads as a 1. A separator that the writing crosses is left as is."""
    ink = ink_mask(gray)
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size < 2:
        return gray
    top, bottom = int(rows[0]), int(rows[-1])
    height = bottom - top
    inked = np.count_nonzero(ink, axis=0) >= 2  # a lone noise pixel is no stroke
    # The training dates' proportions (train/synth.py): a slash leans over about a third of the
    # digits' height, with a sixth of it to the left and a fifth to the right.
    lean, before, after = (max(2, round(f * height)) for f in (0.36, 0.17, 0.2))
    paper = paper_level(gray)
    pieces, at = [], 0
    for x in sorted(int(round(x)) for x in xs):
        if not at < x < gray.shape[1] or inked[x]:
            continue
        left, right = x, x
        while left > at and not inked[left - 1]:
            left -= 1
        while right < gray.shape[1] and not inked[right]:
            right += 1
        gap = np.full((gray.shape[0], before + lean + after), paper, np.uint8)
        cv2.line(gap, (before + lean, top), (before, bottom), SEPARATOR_INK, max(1, round(height / 25)), cv2.LINE_AA)
        pieces += [gray[:, at:left], gap]
        at = right
    return np.hstack([*pieces, gray[:, at:]]) if pieces else gray


def remove_rules(gray: np.ndarray, min_fraction: float = 0.35, edge: int = 0) -> np.ndarray:
    """Erase straight horizontal/vertical rules longer than `min_fraction` of the crop, and
    vertical ones half its height long within `edge` columns of its left or right side."""
    if gray.size == 0:
        return gray
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 25)
    h, w = gray.shape
    lines = _long_runs(ink, max(3, int(w * min_fraction)), axis=1) | _long_runs(ink, max(3, int(h * 0.9)), axis=0)
    if edge > 0:
        # A box's side that registration left a few pixels off survives the template mask. It
        # spans the box's height (three quarters of the crop with its margins), too short for
        # the rule above, and a handwritten stroke half the crop tall and straight does not
        # stand at the box's very edge. Left alone, it was read as a letter (ELSA as `EA`, a
        # blank box as `E`) or made a blank box look written (sent to review).
        edge = min(edge, w // 4)  # a narrow box: its middle, where the writing is, stays out
        sides = np.zeros_like(ink)
        sides[:, :edge], sides[:, w - edge:] = ink[:, :edge], ink[:, w - edge:]
        lines |= _long_runs(sides, max(3, int(h * EDGE_RULE_FRACTION)), axis=0)
    if not lines.any():
        return gray.copy()
    out = gray.copy()
    out[cv2.dilate(lines, np.ones((3, 3), np.uint8)) > 0] = paper_level(gray)
    return out


def _long_runs(ink: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Opening of `ink` with a straight line of `length` along rows (axis=1) or columns (axis=0).

    Each row (column) is opened on its own, so only the rows holding enough ink to contain such
    a run are computed: the same result as the whole opening, at a fraction of its cost.
    """
    size = (length, 1) if axis == 1 else (1, length)
    extent = ink.shape[axis]
    # A pixel survives erosion only if the kernel's part inside the crop is all ink.
    need = min(extent, length - length // 2)
    lanes = np.flatnonzero(np.count_nonzero(ink, axis=axis) >= need)
    out = np.zeros_like(ink)
    if lanes.size:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, size)
        if axis == 1:
            out[lanes] = cv2.morphologyEx(np.ascontiguousarray(ink[lanes]), cv2.MORPH_OPEN, kernel)
        else:
            out[:, lanes] = cv2.morphologyEx(np.ascontiguousarray(ink[:, lanes]), cv2.MORPH_OPEN, kernel)
    return out


def paper_level(gray: np.ndarray) -> int:
    """The crop's paper grey: erased ink takes this value, so no bright streak is left behind."""
    return int(percentile_u8(gray, 75)) if gray.size else 255
