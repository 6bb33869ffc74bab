"""How registration behaves as scans get worse: success rate and field offset per perturbation.

    python -m formreader.benchmark.alignment [--pages 10]

Draws filled fiche-a forms, perturbs them (rotation, scale, shift, blur, noise, JPEG, resolution)
and reports, per level, how many pages align, their mean score and the mean pixel error of the
recovered field boxes (200 dpi template pixels). The tests draw their forms with the same `fill`
and `scan`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from formreader.align import Aligner
from formreader.paths import shared_root
from formreader.template import Template

LEVELS = {
    "clean": dict(),
    "issue limits: rot 5, scale 8%, shift 5%": dict(angle=5, scale=1.08, shift=(0.05, 0.05)),
    "limits + blur 5 + noise 12 + jpeg 30": dict(angle=-5, scale=0.92, shift=(-0.05, 0.05), blur=5, noise=12, jpeg=30),
    "150 dpi + limits + noise": dict(angle=5, scale=0.92, dpi_factor=0.75, blur=3, noise=10, jpeg=40),
    "300 dpi + limits": dict(angle=-5, scale=1.08, dpi_factor=1.5, shift=(0.05, -0.05)),
    "beyond: rot 10": dict(angle=10),
    "beyond: rot 15": dict(angle=15),
    "beyond: scale 0.8": dict(scale=0.8),
    "beyond: shift 15%": dict(shift=(0.15, 0.1)),
    "beyond: blur 11 + noise 30 + jpeg 10": dict(blur=11, noise=30, jpeg=10),
    "beyond: 100 dpi + blur 5": dict(dpi_factor=0.5, blur=5),
    "upside down": dict(angle=180),
    "sheet feeder: page stretched 3%": dict(stretch=1.03),
    "photo at a slant: top 6% narrower": dict(tilt=0.06, angle=2),
}


def _font(px: int) -> ImageFont.ImageFont:
    fonts_dir = shared_root() / "fonts"
    fonts = sorted(fonts_dir.glob("*.ttf")) if fonts_dir.is_dir() else []
    if fonts:
        return ImageFont.truetype(str(fonts[0]), px)
    return ImageFont.load_default(size=px)


def fill(template: Template, values: dict[str, str]) -> np.ndarray:
    """The template's blank with each value written in its field's box (gray uint8)."""
    img = Image.fromarray(template.blank.copy())
    draw = ImageDraw.Draw(img)
    for spec in template.layout.fields:
        text = values.get(spec.name, "")
        if not text:
            continue
        x0, y0, x1, y1 = template.mm_rect(spec.value_mm)
        px = int((y1 - y0) * 0.6)
        draw.text((x0 + px // 2, y1 - px // 4), text, fill=20, font=_font(px), anchor="ls")
    return np.asarray(img)


@dataclass(frozen=True)
class Scan:
    """One fixed perturbation (formreader.synth.scan draws random ones from presets instead)."""

    angle: float = 0.0  # degrees
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # fraction of the page
    blur: int = 0  # kernel size, odd
    noise: float = 0.0  # gaussian sigma in grey levels
    jpeg: int = 0  # quality, 0 = none
    dpi_factor: float = 1.0  # 0.75 = 150 dpi from a 200 dpi page
    stretch: float = 1.0  # page height factor: a sheet feeder pulling the paper fast (>1) or slow
    tilt: float = 0.0  # top edge this fraction of the width narrower: a photo taken at a slant


def scan(page: np.ndarray, s: Scan, seed: int = 0) -> np.ndarray:
    h, w = page.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), s.angle, s.scale)
    m[:, 2] += (s.shift[0] * w, s.shift[1] * h)
    out = cv2.warpAffine(page, m, (w, h), borderValue=255)
    if s.tilt:
        d = s.tilt * w / 2
        corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        slanted = np.float32([[d, 0], [w - d, 0], [w, h], [0, h]])
        out = cv2.warpPerspective(out, cv2.getPerspectiveTransform(corners, slanted), (w, h), borderValue=255)
    if s.stretch != 1.0:
        out = cv2.resize(out, (w, round(h * s.stretch)), interpolation=cv2.INTER_LINEAR)
    if s.dpi_factor != 1.0:
        out = cv2.resize(out, None, fx=s.dpi_factor, fy=s.dpi_factor, interpolation=cv2.INTER_AREA)
    if s.blur:
        out = cv2.GaussianBlur(out, (s.blur, s.blur), 0)
    if s.noise:
        rng = np.random.default_rng(seed)
        out = np.clip(out + rng.normal(0, s.noise, out.shape), 0, 255).astype(np.uint8)
    if s.jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, s.jpeg])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m formreader.benchmark.alignment", description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=10, help="pages per perturbation level")
    args = ap.parse_args(argv)
    template = Template.load()
    aligner = Aligner(template)
    names = ["DUPONT", "MARTIN", "LEFEBVRE", "N'DIAYE", "GARCIA-LOPEZ"]
    rng = np.random.default_rng(0)
    print(f"{'perturbation':44s} aligned  score  field-px-err  ms/page")
    for label, kw in LEVELS.items():
        ok, scores, errs, secs = 0, [], [], []
        for i in range(args.pages):
            values = {"NOM": names[i % 5], "PRENOM": names[(i + 2) % 5], "DATE": f"{1 + i % 28:02d}/0{1 + i % 9}/2010"}
            page = fill(template, values)
            params = dict(kw)
            if "angle" in params:  # vary the sign and a little of the size of each perturbation
                params["angle"] = params["angle"] * rng.choice([-1, 1]) * rng.uniform(0.9, 1.0)
            t0 = time.perf_counter()
            result = aligner.align(scan(page, Scan(**params), seed=i))
            secs.append(time.perf_counter() - t0)
            scores.append(result.score)
            if result.ok:
                ok += 1
                errs.append(field_error(template, page, result.image))
        err = f"{np.mean(errs):6.2f}" if errs else "   n/a"
        print(f"{label:44s} {ok:3d}/{args.pages:<3d} {np.mean(scores):6.2f}  {err:>12s}  {1000 * np.mean(secs):7.0f}")


def field_error(template: Template, page: np.ndarray, aligned: np.ndarray) -> float:
    """Mean shift (px) between the original and recovered field boxes, by phase correlation."""
    shifts = []
    for spec in template.layout.fields:
        x0, y0, x1, y1 = template.mm_rect(spec.value_mm, 4.0)
        a = page[y0:y1, x0:x1].astype(np.float32)
        b = aligned[y0:y1, x0:x1].astype(np.float32)
        if a.std() < 5:
            continue
        (dx, dy), _ = cv2.phaseCorrelate(a, b)
        shifts.append(float(np.hypot(dx, dy)))
    return float(np.mean(shifts)) if shifts else 0.0


if __name__ == "__main__":
    main()
