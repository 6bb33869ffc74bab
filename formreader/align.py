"""Register a scanned page onto its template: ORB features, then a RANSAC similarity transform,
or an affine transform or homography (polished by ECC) where the page is stretched or tilted.

The score says how much of the template's printed ink is found where it should be on the
warped page: handwriting adds ink but never hides the form, so a right alignment scores high and
a wrong form or a failed registration scores low and is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from formreader.template import Template

# Registration runs on the page shrunk by a whole factor to about this width: an integer
# INTER_AREA shrink costs a few ms where a fractional one costs tens, and keeps thin rules visible.
WORK_WIDTH = 550
MIN_SIDE = 32  # px at the working resolution: about one ORB patch (31 px); below it nothing can match
# A scanner moves, turns and scales the page: a similarity transform. A sheet feeder pulling the
# paper a little fast also stretches it (an affine transform), and a photo taken at a slant tilts
# it (a homography); a similarity undoes neither (a page stretched 3% lost 6 points of exact
# fields). The freer transforms fit a flat scan's noise, and now and then badly, so each is taken
# only when it finds this much more of the template's printed ink than the simpler one chosen.
MODELS = ("similarity", "affine", "homography")
PERSPECTIVE_GAIN = 0.02
FREER_SUPPORT = 2  # ... and rests on at least this many times `min_inliers` matches (more freedom, more support)
ECC_STOP = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 1e-3)  # polishing a freer fit: 10 steps gain as much as 50


@dataclass
class Alignment:
    score: float  # fraction of printed template ink found on the page, 0..1
    ok: bool
    matches: int = 0
    inliers: int = 0
    note: str = ""
    matrix: np.ndarray | None = None  # full-resolution page -> template pixels (3x3; affine unless the page was tilted)
    page: np.ndarray | None = field(default=None, repr=False)
    size: tuple[int, int] = (0, 0)  # template (width, height) in pixels

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The box (x0, y0)-(x1, y1) of the template frame, cut from the registered page.

        Only these pixels are resampled: cutting a few field boxes costs a fraction of warping
        the whole page.
        """
        shifted = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ self.matrix
        return _warp(self.page, shifted, (x1 - x0, y1 - y0))

    @cached_property
    def image(self) -> np.ndarray | None:
        """The whole page in the template's pixel frame (None when registration failed)."""
        if self.matrix is None or self.page is None:
            return None
        return self.region(0, 0, *self.size)


@dataclass(frozen=True)
class AlignerSettings:
    features: int = 600  # ORB keypoints on the page
    # A page the first try cannot register gets one denser try: on a page scanned at another
    # resolution the handful of matches among 600 keypoints can fall short, while 2400 find them.
    # Only failing pages pay for it.
    retry_features: int = 2400
    template_features: int = 1000
    ratio: float = 0.8
    min_inliers: int = 12
    min_score: float = 0.55
    ransac_px: float = 3.0  # at the working resolution


class Aligner:
    """Aligns pages to one template; the template's features are computed once, here."""

    def __init__(self, template: Template, settings: AlignerSettings = AlignerSettings()):
        self.template = template
        self.settings = settings
        self._k_t = max(1, round(template.blank.shape[1] / WORK_WIDTH))
        small = _shrink(template.blank, self._k_t)
        self._small_size = (small.shape[1], small.shape[0])
        self._kp_t, self._des_t = self._orb(settings.template_features).detectAndCompute(small, None)
        self._small_t = small.astype(np.float32)  # for ECC
        self._ink_t = _ink(small) > 0

    @staticmethod
    def _orb(features: int) -> cv2.ORB:
        # A detector per call: cheap, and pages are aligned from several threads at once. Six
        # levels span 2.5x in scale: the whole shrink factor is chosen to bring any page near the
        # template's working width, so only scanner scale (and 150/300 dpi leftovers) remain.
        return cv2.ORB_create(nfeatures=features, scaleFactor=1.2, nlevels=6)

    def align(self, page: np.ndarray) -> Alignment:
        k_p = max(1, round(page.shape[1] / self._small_size[0]))
        if min(page.shape[:2]) < k_p * MIN_SIDE:
            # ORB's pyramid cannot be built on a sliver (OpenCV 5 raises instead of finding nothing).
            return Alignment(0.0, False, note=f"page too small to align ({page.shape[1]}x{page.shape[0]} px)")
        small = _shrink(page, k_p)
        first = self._register(page, small, k_p, self.settings.features)
        if first.ok or self.settings.retry_features <= self.settings.features:
            return first
        second = self._register(page, small, k_p, self.settings.retry_features)
        return second if (second.ok, second.score) > (first.ok, first.score) else first

    def _register(self, page: np.ndarray, small: np.ndarray, k_p: int, features: int) -> Alignment:
        kp, des = self._orb(features).detectAndCompute(small, None)
        if des is None or self._des_t is None or len(kp) < self.settings.min_inliers:
            return Alignment(0.0, False, note="no features found on page")
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des, self._des_t, k=2)
        good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < self.settings.ratio * m[1].distance]
        if len(good) < self.settings.min_inliers:
            return Alignment(0.0, False, matches=len(good), note="page does not match the template")
        src = np.float32([kp[m.queryIdx].pt for m in good])
        dst = np.float32([self._kp_t[m.trainIdx].pt for m in good])
        fit, chosen, most = None, "", 0
        for model in MODELS:  # the simplest transform that explains the page, unless a freer one finds more of it
            if fit is not None and fit[2] + PERSPECTIVE_GAIN > 1.0:
                break  # no score can beat this one by the gain: a flat scan pays for one fit only
            found = self._fit(src, dst, small, model)
            most = max(most, found[1] if found else 0)
            if found is not None and (fit is None or found[2] > fit[2] + PERSPECTIVE_GAIN):
                fit, chosen = found, model
        if fit is None:
            return Alignment(0.0, False, len(good), most, note="no consistent transform")
        if chosen != "similarity":
            fit = self._refine(small, fit, chosen)
        matrix, inliers, score = fit
        ok = score >= self.settings.min_score
        note = "" if ok else f"alignment score {score:.2f} below {self.settings.min_score:.2f}"
        full = _full_resolution(matrix, k_p, self._k_t)
        h, w = self.template.blank.shape[:2]
        return Alignment(score, ok, len(good), inliers, note, full, page, (w, h))

    def _fit(self, src: np.ndarray, dst: np.ndarray, small: np.ndarray, model: str) -> tuple[np.ndarray, int, float] | None:
        """(3x3 shrunk page -> shrunk template, inliers, score) of one of MODELS, or None when too
        few matches agree on one."""
        px = self.settings.ransac_px
        if model == "homography":
            matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, px, maxIters=4000, confidence=0.995)
        else:
            estimate = cv2.estimateAffinePartial2D if model == "similarity" else cv2.estimateAffine2D
            matrix, mask = estimate(src, dst, method=cv2.RANSAC, ransacReprojThreshold=px, maxIters=4000, confidence=0.995)
        inliers = int(mask.sum()) if mask is not None else 0
        if matrix is None or inliers < self.settings.min_inliers * (1 if model == "similarity" else FREER_SUPPORT):
            return None
        if matrix.shape[0] == 2:
            matrix = np.vstack([matrix, [0.0, 0.0, 1.0]])
        # The score looks at the shrunk page warped onto the shrunk template: no full-page warp.
        return matrix, inliers, self._score(_warp(small, matrix, self._small_size))

    def _refine(self, small: np.ndarray, fit: tuple[np.ndarray, int, float], model: str) -> tuple[np.ndarray, int, float]:
        """A freer fit polished by ECC (the transform that best correlates the page with the blank
        form), kept when it finds more of the form. Matched keypoints leave a slanted page a few
        pixels off, enough to leave box sides in the crops of a boxed form (b15 at a slant: 66.6%
        exact, 73.3% polished). Flat scans never get here; a polished page takes about 3.4 times
        as long to align."""
        matrix, inliers, score = fit
        motion = cv2.MOTION_HOMOGRAPHY if model == "homography" else cv2.MOTION_AFFINE
        warp = np.linalg.inv(matrix).astype(np.float32)  # ECC maps template pixels to page pixels
        if motion == cv2.MOTION_AFFINE:
            warp = warp[:2]
        try:
            _, warp = cv2.findTransformECC(self._small_t, small.astype(np.float32), warp, motion, ECC_STOP, None, 5)
        except cv2.error:  # the iteration diverged: keep the keypoint fit
            return fit
        if warp.shape[0] == 2:
            warp = np.vstack([warp, [0.0, 0.0, 1.0]])
        polished = np.linalg.inv(warp.astype(np.float64))
        if motion == cv2.MOTION_AFFINE:
            polished[2] = (0.0, 0.0, 1.0)
        better = self._score(_warp(small, polished, self._small_size))
        return (polished, inliers, better) if better > score else fit

    def _score(self, warped_small: np.ndarray) -> float:
        page_ink = cv2.dilate(_ink(warped_small), np.ones((3, 3), np.uint8)) > 0
        total = int(self._ink_t.sum())
        return float((page_ink & self._ink_t).sum()) / total if total else 0.0


def _shrink(image: np.ndarray, k: int) -> np.ndarray:
    """Mean of k x k blocks (the last partial row/column of blocks is dropped)."""
    if k == 1:
        return image
    h, w = image.shape[0] // k, image.shape[1] // k
    return cv2.resize(image[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)


def _ink(gray: np.ndarray) -> np.ndarray:
    # Adaptive threshold copes with uneven scan lighting and grey backgrounds.
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 25, 20)


def _to_small(k: int) -> np.ndarray:
    """Full-resolution -> shrunk pixel coordinates: block i's centre is full pixel k*i + (k-1)/2."""
    return np.array([[1.0 / k, 0.0, -(k - 1) / (2.0 * k)], [0.0, 1.0 / k, -(k - 1) / (2.0 * k)], [0.0, 0.0, 1.0]])


def _full_resolution(matrix: np.ndarray, k_page: int, k_template: int) -> np.ndarray:
    """Lift a 3x3 transform found on shrunk images to full-resolution page -> template pixels."""
    return np.linalg.inv(_to_small(k_template)) @ matrix @ _to_small(k_page)


def _is_affine(matrix: np.ndarray) -> bool:
    return bool(np.array_equal(matrix[2], (0.0, 0.0, 1.0)))


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` resampled through a 3x3 transform (an affine one by the cheaper affine warp)."""
    if _is_affine(matrix):
        return cv2.warpAffine(image, matrix[:2], size, flags=cv2.INTER_LINEAR, borderValue=255)
    return cv2.warpPerspective(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=255)
