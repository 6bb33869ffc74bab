"""Print-and-scan simulation: what a filled form goes through between the pen and the file.

A preset gives ranges; each page draws its own values. Geometry comes first (the sheet lies
askew on the glass), then the optics (blur, resolution), then the sensor (tone, noise) and last
the encoder (JPEG). Pages must stay alignable by `formreader.align.Aligner`: the `hard` preset is
the worst a real office scanner does, not a stress test of the aligner.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from formreader.errors import ConfigError


@dataclass(frozen=True)
class ScanPreset:
    name: str
    rotation_deg: float  # +- this
    scale: float  # 1 +- this
    shift: float  # +- this fraction of the page, each axis
    blur_sigma: tuple[float, float]
    noise_sigma: tuple[float, float]
    contrast: tuple[float, float]  # ink contrast factor (1: unchanged)
    paper: tuple[int, int]  # paper gray level after the scan
    shading: float  # +- gray levels of uneven lighting across the page
    jpeg_quality: tuple[int, int]
    dpi: tuple[float, float]


PRESETS = {
    "mild": ScanPreset("mild", 1.0, 0.02, 0.01, (0.0, 0.6), (0.0, 3.0), (0.9, 1.0), (238, 255), 4.0, (80, 92), (150, 300)),
    "hard": ScanPreset("hard", 5.0, 0.08, 0.05, (0.6, 1.3), (4.0, 10.0), (0.65, 0.9), (200, 240), 15.0, (35, 60), (150, 300)),
}


def preset(name: str) -> ScanPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown scan preset {name!r} (choose {', '.join(PRESETS)})") from None


@dataclass(frozen=True)
class ScanParams:
    """The values one page drew from its preset (kept for provenance and tests)."""

    angle: float
    scale: float
    dx: float
    dy: float
    blur: float
    noise: float
    contrast: float
    paper: int
    shading: float
    quality: int
    dpi: float


def draw_params(p: ScanPreset, rng: np.random.Generator) -> ScanParams:
    u = rng.uniform
    return ScanParams(
        angle=u(-p.rotation_deg, p.rotation_deg),
        scale=1.0 + u(-p.scale, p.scale),
        dx=u(-p.shift, p.shift),
        dy=u(-p.shift, p.shift),
        blur=u(*p.blur_sigma),
        noise=u(*p.noise_sigma),
        contrast=u(*p.contrast),
        paper=int(rng.integers(p.paper[0], p.paper[1] + 1)),
        shading=u(-p.shading, p.shading),
        quality=int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1)),
        # Scanners offer a few standard resolutions, not a continuum.
        dpi=float(rng.choice([d for d in (150, 200, 240, 300) if p.dpi[0] <= d <= p.dpi[1]])),
    )


def simulate_scan(page: np.ndarray, params: ScanParams, source_dpi: float, rng: np.random.Generator) -> np.ndarray:
    """Gray page at `source_dpi` -> gray page as a scanner at `params.dpi` would return it,
    before JPEG encoding (`jpeg_roundtrip` or the file writer applies that)."""
    img = _geometry(page, params)
    if params.blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), params.blur)
    factor = params.dpi / source_dpi
    if abs(factor - 1.0) > 1e-3:
        size = (round(img.shape[1] * factor), round(img.shape[0] * factor))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    return _sensor(img, params, rng)


def _geometry(page: np.ndarray, p: ScanParams) -> np.ndarray:
    h, w = page.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), p.angle, p.scale)
    matrix[0, 2] += p.dx * w
    matrix[1, 2] += p.dy * h
    # The scanner lid is white: whatever slides off the page edge is paper-coloured.
    return cv2.warpAffine(page, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)


def _sensor(img: np.ndarray, p: ScanParams, rng: np.random.Generator) -> np.ndarray:
    w = img.shape[1]
    # Ink darkness scaled towards the paper; the paper tone itself set to the scanner's white.
    darkness = (255.0 - img.astype(np.float32)) * p.contrast
    ramp = np.linspace(-p.shading, p.shading, w, dtype=np.float32)[None, :]
    out = p.paper + ramp - darkness * (p.paper / 255.0)
    if p.noise > 0:
        out += rng.normal(0.0, p.noise, size=out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """The compression a scanner applies before the file is saved in a lossless container."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img
