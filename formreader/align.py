"""Register a scanned page onto its template (ORB features + RANSAC similarity transform).

The score says how much of the template's printed ink is found where it should be on the
warped page: handwriting adds ink but never hides the form, so a right alignment scores high and
a wrong form or a failed registration scores low and is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from formreader.template import Template

WORK_WIDTH = 1000  # alignment runs at this page width: fast, and plenty of features


@dataclass
class Alignment:
    image: np.ndarray | None  # the page in the template's pixel frame (None when it failed)
    score: float  # fraction of printed template ink found on the page, 0..1
    ok: bool
    matches: int = 0
    inliers: int = 0
    note: str = ""


@dataclass(frozen=True)
class AlignerSettings:
    features: int = 2000
    ratio: float = 0.8
    min_inliers: int = 12
    min_score: float = 0.55
    ransac_px: float = 3.0


class Aligner:
    """Aligns pages to one template; the template's features are computed once, here."""

    def __init__(self, template: Template, settings: AlignerSettings = AlignerSettings()):
        self.template = template
        self.settings = settings
        self._scale_t = WORK_WIDTH / template.blank.shape[1]
        small = _resize(template.blank, self._scale_t)
        self._kp_t, self._des_t = self._orb().detectAndCompute(small, None)
        self._ink_t = _ink(small) > 0

    def _orb(self) -> cv2.ORB:
        # A detector per call: cheap, and pages are aligned from several threads at once.
        return cv2.ORB_create(nfeatures=self.settings.features, scaleFactor=1.2, nlevels=8)

    def align(self, page: np.ndarray) -> Alignment:
        scale_p = WORK_WIDTH / page.shape[1]
        small = _resize(page, scale_p)
        kp, des = self._orb().detectAndCompute(small, None)
        if des is None or self._des_t is None or len(kp) < self.settings.min_inliers:
            return Alignment(None, 0.0, False, note="no features found on page")
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des, self._des_t, k=2)
        good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < self.settings.ratio * m[1].distance]
        if len(good) < self.settings.min_inliers:
            return Alignment(None, 0.0, False, matches=len(good), note="page does not match the template")
        src = np.float32([kp[m.queryIdx].pt for m in good])
        dst = np.float32([self._kp_t[m.trainIdx].pt for m in good])
        matrix, mask = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=self.settings.ransac_px, maxIters=4000, confidence=0.995
        )
        inliers = int(mask.sum()) if mask is not None else 0
        if matrix is None or inliers < self.settings.min_inliers:
            return Alignment(None, 0.0, False, len(good), inliers, note="no consistent transform")
        full = _full_resolution(matrix, scale_p, self._scale_t)
        h, w = self.template.blank.shape[:2]
        warped = cv2.warpAffine(page, full, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)
        score = self._score(_resize(warped, self._scale_t))
        ok = score >= self.settings.min_score
        note = "" if ok else f"alignment score {score:.2f} below {self.settings.min_score:.2f}"
        return Alignment(warped, score, ok, len(good), inliers, note)

    def _score(self, warped_small: np.ndarray) -> float:
        page_ink = cv2.dilate(_ink(warped_small), np.ones((3, 3), np.uint8)) > 0
        total = int(self._ink_t.sum())
        return float((page_ink & self._ink_t).sum()) / total if total else 0.0


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    size = (max(1, int(round(image.shape[1] * scale))), max(1, int(round(image.shape[0] * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _ink(gray: np.ndarray) -> np.ndarray:
    # Adaptive threshold copes with uneven scan lighting and grey backgrounds.
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 25, 20)


def _full_resolution(matrix: np.ndarray, scale_page: float, scale_template: float) -> np.ndarray:
    """Lift a transform found on downscaled images to full-resolution page -> template pixels."""
    to_small = np.diag([scale_page, scale_page, 1.0])
    from_small = np.diag([1.0 / scale_template, 1.0 / scale_template, 1.0])
    m3 = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return (from_small @ m3 @ to_small)[:2]
