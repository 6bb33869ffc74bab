"""Cut field crops from an aligned page and erase the form's printed ink from them.

The template's own printed ink (labels such as ``NOM :``, guide lines, boxes, printed date
separators) is known pixel for pixel, so it is masked out after a small dilation that absorbs
the residual misalignment. Long straight rules that survive (a slightly bent scan) are removed
by a morphological pass, so the recognizer sees handwriting only.
"""

from __future__ import annotations

import cv2
import numpy as np

from formreader.preprocess import blank_confidence
from formreader.records import FieldCrop
from formreader.template import FieldSpec, Template

MARGIN_MM = 2.0  # handwriting overflows its box; keep a little around it
MASK_GROW_MM = 0.35


def cut_fields(aligned: np.ndarray, template: Template, margin_mm: float = MARGIN_MM) -> list[FieldCrop]:
    grow = max(1, int(round(MASK_GROW_MM * template.px_per_mm)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return [_cut(aligned, template, spec, margin_mm, kernel) for spec in template.layout.fields]


def _cut(aligned: np.ndarray, template: Template, spec: FieldSpec, margin_mm: float, kernel: np.ndarray) -> FieldCrop:
    x0, y0, x1, y1 = template.mm_rect(spec.value_mm, margin_mm)
    crop = aligned[y0:y1, x0:x1].copy()
    printed = cv2.dilate(template.printed_ink[y0:y1, x0:x1], kernel)
    crop[printed > 0] = paper_level(crop)
    crop = remove_rules(crop)
    return FieldCrop(name=spec.name, kind=spec.kind, image=crop, blank_confidence=blank_confidence(crop), choices=spec.choices)


def remove_rules(gray: np.ndarray, min_fraction: float = 0.35) -> np.ndarray:
    """Erase straight horizontal/vertical rules longer than `min_fraction` of the crop."""
    if gray.size == 0:
        return gray
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 25)
    h, w = gray.shape
    lines = np.zeros_like(ink)
    for size in ((max(3, int(w * min_fraction)), 1), (1, max(3, int(h * 0.9)))):
        k = cv2.getStructuringElement(cv2.MORPH_RECT, size)
        lines |= cv2.morphologyEx(ink, cv2.MORPH_OPEN, k)
    out = gray.copy()
    out[cv2.dilate(lines, np.ones((3, 3), np.uint8)) > 0] = paper_level(gray)
    return out


def paper_level(gray: np.ndarray) -> int:
    """The crop's paper grey: erased ink takes this value, so no bright streak is left behind."""
    return int(np.percentile(gray, 75)) if gray.size else 255
