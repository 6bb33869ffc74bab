"""Crop normalization shared by training (`train/`) and inference.

Both sides must see exactly the same pixels, so this is the only place that turns a
grayscale field crop into the recognizer's input tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """Geometry and normalization of the recognizer input (stored in the ONNX metadata)."""

    height: int = 64
    width: int = 256
    layout: str = "NHWC"  # NHWC or NCHW
    invert: bool = True  # ink -> 1.0, paper -> 0.0
    scale: float = 1.0 / 255.0
    mean: float = 0.0
    std: float = 1.0
    channels: int = 1  # gray replicated to this many channels (PP-OCR reads 3)

    @property
    def paper(self) -> float:
        """The normalized value of blank paper (what the right padding holds)."""
        return ((0.0 if self.invert else 255.0) * self.scale - self.mean) / self.std


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any uint8 image (gray, BGR, BGRA) to a 2-D uint8 gray image."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def percentile_u8(gray: np.ndarray, q: float) -> np.float64:
    """`np.percentile(gray, q)` of a uint8 image, from its histogram: same value, no sort.

    Percentiles of every crop were the scan's single biggest cost once alignment got cheap.
    """
    n = gray.size
    cum = np.cumsum(cv2.calcHist([np.ascontiguousarray(gray)], [0], None, [256], [0, 256]).ravel())
    # numpy's "linear" method, step by step, so the floating-point result is bit for bit the same.
    quantile = np.float64(q) / 100
    virtual = (n - 1) * quantile
    below = np.floor(virtual)
    gamma = virtual - below
    lo = int(np.clip(below, 0, n - 1))
    a = float(np.searchsorted(cum, lo, side="right"))
    b = float(np.searchsorted(cum, min(lo + 1, n - 1), side="right"))
    diff = b - a
    # np.float64, as numpy returns: arithmetic with a float32 crop then runs in float64 as before.
    return np.float64(b - diff * (1 - gamma)) if gamma >= 0.5 else np.float64(a + diff * gamma)


def median_u8(gray: np.ndarray) -> float:
    """`np.median(gray)` of a uint8 image, from its histogram."""
    n = gray.size
    cum = np.cumsum(cv2.calcHist([np.ascontiguousarray(gray)], [0], None, [256], [0, 256]).ravel())
    upper = float(np.searchsorted(cum, n // 2, side="right"))
    if n % 2:
        return upper
    return (float(np.searchsorted(cum, n // 2 - 1, side="right")) + upper) / 2


INK_DROP = 40.0  # ink_mask's floor: ink is at least this much darker than the paper


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of dark ink on light paper (Otsu, guarded against blank crops)."""
    if gray.size == 0:
        return np.zeros(gray.shape, bool)
    blur = cv2.GaussianBlur(gray, (3, 3), 0)
    thr, _ = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # On a blank crop Otsu splits paper noise in two; never call light grey "ink".
    thr = min(thr, median_u8(blur) - INK_DROP)
    return blur < thr


def ink_bbox(gray: np.ndarray, min_area: int = 6, pad: int = 3) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) around the writing, ignoring specks and edge debris; None when blank."""
    return _mask_bbox(ink_mask(gray), min_area, pad)


def _components(gray: np.ndarray) -> tuple:
    """Ink mask (uint8) and its 8-connected components (count, stats, centroids), computed once
    for both the printed-prefix search and the ink box."""
    mask = ink_mask(gray).astype(np.uint8)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return mask, n, stats, centroids


def _mask_bbox(ink: np.ndarray, min_area: int = 6, pad: int = 3, components: tuple | None = None) -> tuple[int, int, int, int] | None:
    mask, stats, keep = _writing_components(ink, min_area, components)
    h, w = mask.shape
    if not keep:
        return None
    x0 = min(stats[i, cv2.CC_STAT_LEFT] for i in keep)
    y0 = min(stats[i, cv2.CC_STAT_TOP] for i in keep)
    x1 = max(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] for i in keep)
    y1 = max(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] for i in keep)
    return (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h))


def _writing_components(ink: np.ndarray, min_area: int = 6, components: tuple | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(mask, component stats, indices of the components that may be writing): not specks,
    not marks cut by the side edges, not neighbouring lines cut by the top or bottom edge."""
    if components is None:
        mask = ink.astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    else:
        mask, n, stats, _ = components
    h, w = mask.shape
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area and not _is_margin_stamp(stats[i], h, w)]
    return mask, stats, _drop_cut_lines(stats, keep, h)


def _is_margin_stamp(stat: np.ndarray, h: int, w: int) -> bool:
    """A thin mark cut by the left/right edge (scanner stamps, box borders)."""
    x, _, cw, ch = (int(v) for v in stat[:4])
    return (x == 0 or x + cw >= w) and cw < 0.06 * w and ch < 0.9 * h


def _drop_cut_lines(stats: np.ndarray, keep: list[int], h: int) -> list[int]:
    """Drop the neighbouring lines of text that the crop cut through at its top or bottom edge.

    Rows of ink form bands separated by empty rows; the writing is the tallest band, and any
    other band touching the top or bottom edge is a cut-off neighbour that would otherwise
    stretch the ink box and shrink the real handwriting.
    """
    rows = np.zeros(h + 1, np.int32)
    for i in keep:
        top = stats[i, cv2.CC_STAT_TOP]
        rows[top] += 1
        rows[top + stats[i, cv2.CC_STAT_HEIGHT]] -= 1
    bands = _row_bands(np.cumsum(rows)[:h] > 0)
    if len(bands) < 2:
        return keep
    tallest = max(bands, key=lambda b: b[1] - b[0])
    cut = [b for b in bands if b != tallest and (b[0] == 0 or b[1] >= h)]
    return [i for i in keep if not any(b0 <= stats[i, cv2.CC_STAT_TOP] < b1 for b0, b1 in cut)]


def _row_bands(covered: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of rows that hold ink."""
    bands, start = [], None
    for y, on in enumerate(list(covered) + [False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            bands.append((start, y))
            start = None
    return bands


def text_lines(gray: np.ndarray, min_height: int = 5, min_span: float = 0.25) -> list[tuple[int, int]]:
    """Bands of ink rows separated by empty rows that are lines of text: at least `min_height`
    tall, or running across `min_span` of the width (the cut-off foot of a line above). An i's
    dot or an accent over the letters is neither and does not count."""
    mask = ink_mask(to_gray(gray))
    lines = []
    for y0, y1 in _row_bands(mask.any(axis=1)):
        cols = np.flatnonzero(mask[y0:y1].any(axis=0))
        if y1 - y0 >= min_height or cols[-1] - cols[0] + 1 >= min_span * mask.shape[1]:
            lines.append((y0, y1))
    return lines


def main_lines(gray: np.ndarray) -> list[tuple[int, int]]:
    """The text lines at least half as tall as the tallest: lines of writing or print, not the
    cut-off foot of a neighbouring line (which reads as a stray letter)."""
    lines = text_lines(gray)
    tallest = max((y1 - y0 for y0, y1 in lines), default=0)
    return [(y0, y1) for y0, y1 in lines if y1 - y0 >= tallest / 2]


def normalize_crop(image: np.ndarray, spec: InputSpec = InputSpec()) -> np.ndarray:
    """Gray crop -> float32 (height, width) array ready for the model (no batch/channel axis).

    A printed label (``NOM :``) is painted out first; the crop is then trimmed to its ink, contrast-stretched, resized to the input height keeping the
    aspect ratio (squeezed only when too wide) and padded on the right with paper.
    """
    gray = to_gray(image)
    components = _components(gray)
    end = _prefix_end(gray, components)
    if end is not None:  # as strip_prefix
        gray = gray.copy()
        gray[:, : end + 1] = 255
        components = _components(gray)
    box = _mask_bbox(components[0], components=components)
    if box is not None:
        x0, y0, x1, y1 = box
        gray = gray[y0:y1, x0:x1]
    else:
        gray = np.full((spec.height, spec.height), 255, np.uint8)
    lo, hi = (percentile_u8(gray, 2), percentile_u8(gray, 98)) if box is not None else (0.0, 255.0)
    if hi - lo < 30:  # flat crop: keep it as is rather than amplify noise
        lo, hi = 0.0, 255.0
    stretched = np.clip((gray.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
    h, w = stretched.shape
    new_w = max(1, min(spec.width, int(round(w * spec.height / max(h, 1)))))
    resized = cv2.resize(stretched, (new_w, spec.height), interpolation=cv2.INTER_AREA)
    canvas = np.full((spec.height, spec.width), 255.0, np.float32)
    canvas[:, :new_w] = resized
    if spec.invert:
        canvas = 255.0 - canvas
    return ((canvas * spec.scale) - spec.mean) / spec.std


def to_batch(crops: list[np.ndarray], spec: InputSpec = InputSpec()) -> np.ndarray:
    """Normalized (H, W) arrays -> one float32 batch in the spec's layout."""
    batch = np.stack(crops).astype(np.float32)
    if spec.layout == "NCHW":
        return np.repeat(batch[:, None, :, :], spec.channels, axis=1)
    return np.repeat(batch[:, :, :, None], spec.channels, axis=3)


MIN_INK_FRACTION = 0.002  # less ink than this in a crop is specks, not writing


def blank_confidence(image: np.ndarray, min_ink_fraction: float = MIN_INK_FRACTION) -> float | None:
    """How sure we are that a crop is blank (0..1), or None when it clearly holds writing.

    Blank fields read as "" without asking the recognizer, which would otherwise be free to
    hallucinate letters out of scanner noise.
    """
    gray = to_gray(image)
    ink = ink_mask(gray)
    if _mask_bbox(ink) is None:
        return FAINT_BLANK_CONFIDENCE if _faint_writing(gray) else 1.0
    fraction = float(ink.mean())
    if fraction >= min_ink_fraction:
        return None
    return 1.0 - fraction / min_ink_fraction


# Pale ink (light pencil, blue ink scanned grey) can stay above the ink threshold, paper minus 40
# levels. A blank box is not sure when strokes darker than paper minus 20 are in it: on the hard
# synthetic sets (400 pages, 328 blank fields) no blank field holds one such pixel, and a pale
# "CE2" holds 103. Such a field stays blank but is sent to review.
FAINT_DROP = 20.0
FAINT_MIN_AREA = 20
FAINT_BLANK_CONFIDENCE = 0.5


def _faint_writing(gray: np.ndarray) -> bool:
    return sum(int(a) for a, _ in _faint_strokes(gray)) >= FAINT_MIN_AREA


def _faint_strokes(gray: np.ndarray) -> list[tuple[int, int]]:
    """(area, height) of each pale mark that may be writing."""
    blur = cv2.GaussianBlur(gray, (3, 3), 0)
    _, stats, keep = _writing_components(blur < median_u8(blur) - FAINT_DROP)
    return [(int(stats[i, cv2.CC_STAT_AREA]), int(stats[i, cv2.CC_STAT_HEIGHT])) for i in keep]


# Pale letters stand a sixth of the box tall or more (25-48 px in 141-px boxes on the hard sets),
# while what a blank box keeps of its printed lines is 1-4 px tall, or one long slanted separator.
PALE_LETTER_HEIGHT = 0.15  # of the crop's height
PALE_LETTERS = 2


def darken_pale_writing(image: np.ndarray) -> np.ndarray:
    """A crop with too little ink to be writing (`blank_confidence`) but pale marks as tall as
    letters (at least PALE_LETTERS of them), with every pixel's darkness below the paper scaled
    by INK_DROP / FAINT_DROP so the strokes count as ink; any other crop as it is.

    Left as it was, such a field came out blank and was sent to review with its value lost: the
    hard boxed sets had LILLE, VANNES and VALENCE written in thin pale strokes on grey paper, only
    a few pixels of them dark enough to be ink. Darkened, it is read like any other field.
    """
    gray = to_gray(image)
    if gray.size == 0 or ink_mask(gray).mean() >= MIN_INK_FRACTION:
        return image
    letters = [h for _, h in _faint_strokes(gray) if h >= PALE_LETTER_HEIGHT * gray.shape[0]]
    if len(letters) < PALE_LETTERS:  # printed-line remnants: left to blank_confidence
        return image
    paper = median_u8(cv2.GaussianBlur(gray, (3, 3), 0))
    darkness = np.maximum(paper - gray.astype(np.float32), 0.0)
    return np.clip(paper - darkness * (INK_DROP / FAINT_DROP), 0, 255).astype(np.uint8)


# --- printed prefixes -------------------------------------------------------------
# Crops cut without a template (scanned elsewhere, like the Kaggle name crops) often start with
# the form's printed label. Whatever its words, it ends in a colon: two small, equal, near-square
# dots stacked vertically with printed ink to their left. Everything up to that colon is cut.

MAX_PREFIX_FRACTION = 0.45  # a label never takes more than this much of the crop's width


def find_prefix_end(image: np.ndarray) -> int | None:
    """x just right of the printed label's colon, or None when the crop has no printed prefix."""
    gray = to_gray(image)
    return _prefix_end(gray, _components(gray))


def _prefix_end(gray: np.ndarray, components: tuple) -> int | None:
    h, w = gray.shape
    _, n, st, cen = components
    limit = max(3, h * 0.2)
    dots = [
        i for i in range(1, n)
        if st[i, 2] <= limit and st[i, 3] <= limit and st[i, 4] >= 2
        and 0.5 <= st[i, 2] / st[i, 3] <= 2.0 and cen[i][0] < w * MAX_PREFIX_FRACTION
    ]
    if len(dots) > 80:  # a speckled scan, not a printed label
        return None
    best = None
    for a in dots:
        for b in dots:
            if not _is_colon(st, cen, a, b, h) or not _ends_a_label(st, n, a, b):
                continue
            right = int(max(st[a, 0] + st[a, 2], st[b, 0] + st[b, 2]))
            best = right if best is None else min(best, right)
    return best


# A printed colon spans the x-height: it is shorter than the capital before it, and close to it.
# A handwritten i passes the dot tests, but it stands as tall as its neighbours and as far from
# them as they are from each other; taking it for a colon cut the name (RICHARD -> CHARD). Dev
# train, 216 crops cut: the printed colons span at most 0.8 of the letter before them and stand at
# most 0.71 of their height away; 5 i's span 0.91 or more, a sixth 0.77 but stands 1.1 away.
COLON_TO_LETTER = 0.85
COLON_GAP = 1.0
MIN_LETTER_AREA = 4  # pixels: specks are not letters


def _ends_a_label(st: np.ndarray, n: int, a: int, b: int) -> bool:
    """Whether the colon (dots a over b) follows a printed letter on its own line, as a label's does."""
    top, bottom = int(st[a, 1]), int(st[b, 1] + st[b, 3])
    x0 = int(min(st[a, 0], st[b, 0]))
    left = [i for i in range(1, n) if i not in (a, b) and st[i, 0] + st[i, 2] <= x0 + 1 and st[i, 4] >= MIN_LETTER_AREA
            and st[i, 1] < bottom and st[i, 1] + st[i, 3] > top]
    if not left:
        return False
    letter = max(left, key=lambda i: st[i, 0] + st[i, 2])  # the nearest on the left
    span, gap = bottom - top, x0 - int(st[letter, 0] + st[letter, 2])
    return span <= COLON_TO_LETTER * st[letter, 3] and gap <= COLON_GAP * span


def _is_colon(st: np.ndarray, cen: np.ndarray, a: int, b: int, h: int) -> bool:
    if st[b, 1] <= st[a, 1]:
        return False
    dy = cen[b][1] - cen[a][1]
    ratio = st[a, 4] / st[b, 4]
    middle = h * 0.15 < (cen[a][1] + cen[b][1]) / 2 < h * 0.85
    inside = st[a, 1] > 0 and st[b, 1] + st[b, 3] < h
    # A printed colon's dots are equally tall; a handwritten i is a dot over a taller stem (or a
    # blot over a stub), which passed for a colon and cut the name before it (VALERIUS -> US).
    # 11,500 Kaggle crops: 8 such i's no longer cut, 2 real colons missed.
    ha, hb = int(st[a, 3]), int(st[b, 3])
    alike = abs(ha - hb) <= 1 or 0.6 <= ha / hb <= 1.67
    return abs(cen[a][0] - cen[b][0]) <= 2 and h * 0.12 < dy < h * 0.5 and 0.6 < ratio < 1.67 and middle and inside and alike


def strip_prefix(image: np.ndarray) -> np.ndarray:
    """The crop with its printed prefix painted out (same size, so coordinates keep their meaning)."""
    gray = to_gray(image)
    end = find_prefix_end(gray)
    if end is None:
        return gray
    out = gray.copy()
    out[:, : end + 1] = 255
    return out
