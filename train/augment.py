"""Photometric and geometric degradation of raw gray crops (dark ink on light paper).

Applied before `formreader.preprocess.normalize_crop`, so the model sees exactly the pipeline
the runtime uses. Strength 0 = identity; 1 = the default training mix.
"""

from __future__ import annotations

import cv2
import numpy as np


def _affine(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    h, w = img.shape
    angle = rng.normal(0, 1.5 * strength)
    shear = rng.normal(0, 0.15 * strength)
    sx = np.exp(rng.normal(0, 0.12 * strength))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[0, :2] = m[0, :2] * sx
    m[0, 1] += shear
    m[0, 2] += (1 - sx) * w / 2 - shear * h / 2
    new_w = int(w * max(sx, 1.0)) + 2
    border = int(np.median(img))
    return cv2.warpAffine(img, m, (new_w, h), flags=cv2.INTER_LINEAR, borderValue=border)


def _elastic(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth random displacement (coarse grid upsampled): wobbly strokes, not noise."""
    h, w = img.shape
    amp = 1.6 * strength
    gx = cv2.resize(rng.normal(0, amp, (3, max(2, w // 40))).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    gy = cv2.resize(rng.normal(0, amp, (3, max(2, w // 40))).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xs + gx, ys + gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _stroke_width(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kernel = np.ones((2, 2), np.uint8)
    return cv2.erode(img, kernel) if rng.random() < 0.5 else cv2.dilate(img, kernel)


def _tone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random ink and paper levels (faint pencil to heavy marker, grey or bright paper)."""
    paper = rng.uniform(170, 255)
    ink = rng.uniform(0, min(130, paper - 50))
    f = img.astype(np.float32) / 255.0
    return (ink + f * (paper - ink)).astype(np.float32)


def _edge_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Jitter the crop box: trim or pad a few pixels on each side (field cut-outs vary)."""
    h, w = img.shape
    t, b = rng.integers(-4, max(1, h // 10), 2)
    left, r = rng.integers(-6, 6, 2)
    pad = [max(0, -t), max(0, -b), max(0, -left), max(0, -r)]
    img = cv2.copyMakeBorder(img, *pad, cv2.BORDER_REPLICATE)
    h2, w2 = img.shape
    out = img[max(0, t): h2 - max(0, b), max(0, left): w2 - max(0, r)]
    return out if min(out.shape) >= 4 else img  # never trim a tiny crop away


def _bilevel(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Black and white, as an office scanner in B&W mode returns a page: every pixel thresholded
    near Otsu's level (the scanner's own choice varies), sometimes resampled afterwards (a 1-bit
    PDF rendered at another dpi has grey edges)."""
    level, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    out = np.where(img > level + rng.uniform(-25, 25), 255, 0).astype(np.uint8)
    if rng.random() < 0.3:
        h, w = out.shape
        k = rng.uniform(0.6, 0.9)
        out = cv2.resize(cv2.resize(out, (max(1, int(w * k)), max(1, int(h * k))), interpolation=cv2.INTER_AREA), (w, h))
    return out


def augment(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0, bilevel: float = 0.0) -> np.ndarray:
    """One random degradation of a gray uint8 crop; returns gray uint8. `bilevel`: the chance
    that the degraded crop is then thresholded to black and white."""
    if strength <= 0 or min(img.shape) < 4:  # degenerate crops pass through untouched
        return img
    out = img
    if rng.random() < 0.6:
        out = _edge_crop(out, rng)
    if rng.random() < 0.8:
        out = _affine(out, rng, strength)
    if rng.random() < 0.35 * strength:
        out = _elastic(out, rng, strength)
    if rng.random() < 0.3:
        out = _stroke_width(out, rng)
    f = _tone(out, rng) if rng.random() < 0.6 else out.astype(np.float32)
    if rng.random() < 0.3:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 1.2 * strength))
    if rng.random() < 0.25:  # lose resolution as a low-dpi scan would
        h, w = f.shape
        k = rng.uniform(0.5, 0.85)
        f = cv2.resize(cv2.resize(f, (max(1, int(w * k)), max(1, int(h * k)))), (w, h))
    if rng.random() < 0.5:
        f = f + rng.normal(0, rng.uniform(2, 12 * strength), f.shape)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        q = int(rng.integers(30, 90))
        out = cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_GRAYSCALE)
    if bilevel > 0 and rng.random() < bilevel:
        out = _bilevel(out, rng)
    return out
