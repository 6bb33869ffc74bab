"""Cut field crops from an aligned page and erase the form's printed ink from them.

The template's own printed ink (labels such as ``NOM :``, guide lines, boxes, printed date
separators) is known pixel for pixel, so it is masked out after a small dilation that absorbs
the residual misalignment. Long straight rules that survive (a slightly bent scan) are removed
by a morphological pass, so the recognizer sees handwriting only.
"""

from __future__ import annotations

import cv2
import numpy as np

from formreader.align import Alignment
from formreader.preprocess import blank_confidence, percentile_u8
from formreader.records import FieldCrop
from formreader.template import FieldSpec, Template

MARGIN_MM = 2.0  # handwriting overflows its box; keep a little around it
MASK_GROW_MM = 0.35


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
    crop = remove_rules(crop)
    return FieldCrop(name=spec.name, kind=spec.kind, image=crop, blank_confidence=blank_confidence(crop), choices=spec.choices)


def remove_rules(gray: np.ndarray, min_fraction: float = 0.35) -> np.ndarray:
    """Erase straight horizontal/vertical rules longer than `min_fraction` of the crop."""
    if gray.size == 0:
        return gray
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 25)
    h, w = gray.shape
    lines = _long_runs(ink, max(3, int(w * min_fraction)), axis=1) | _long_runs(ink, max(3, int(h * 0.9)), axis=0)
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
