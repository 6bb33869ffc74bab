"""Filled-in forms drawn inside the tests: values written into a template's boxes, then 'scanned'."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from formreader.paths import shared_root
from formreader.template import Template

FONT_DIR = shared_root() / "fonts"


def _font(px: int) -> ImageFont.ImageFont:
    fonts = sorted(FONT_DIR.glob("*.ttf")) if FONT_DIR.is_dir() else []
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
    angle: float = 0.0  # degrees
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # fraction of the page
    blur: int = 0  # kernel size, odd
    noise: float = 0.0  # gaussian sigma in grey levels
    jpeg: int = 0  # quality, 0 = none
    dpi_factor: float = 1.0  # 0.75 = 150 dpi from a 200 dpi page


def scan(page: np.ndarray, s: Scan, seed: int = 0) -> np.ndarray:
    h, w = page.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), s.angle, s.scale)
    m[:, 2] += (s.shift[0] * w, s.shift[1] * h)
    out = cv2.warpAffine(page, m, (w, h), borderValue=255)
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


SECOND_LAYOUT = {
    "name": "inscription-b",
    "title": "A second form: boxed fields, labels above the boxes, printed date separators",
    "page_mm": [210, 297],
    "printed": [
        {"text": "BULLETIN D'INSCRIPTION", "mm": [30, 30], "size_mm": 8, "bold": True},
        {"text": "Association sportive - saison 2026", "mm": [30, 42], "size_mm": 4},
        {"text": "Cadre réservé à l'administration", "mm": [20, 250], "size_mm": 3.5},
    ],
    "rules": [[15, 50, 195, 50], [15, 240, 195, 240]],
    "boxes": [[150, 255, 40, 25]],
    "fields": [
        {"name": "PRENOM", "label": "Prénom", "label_mm": [25, 70], "value_mm": [25, 73, 120, 14], "box": True},
        {"name": "NOM", "label": "Nom de famille", "label_mm": [25, 105], "value_mm": [25, 108, 150, 14], "box": True},
        {"name": "DATE", "label": "Né(e) le", "label_mm": [25, 140], "value_mm": [25, 143, 70, 14], "kind": "date",
         "box": True, "slashes_mm": [21, 44]},
        {"name": "VILLE", "label": "Ville", "label_mm": [110, 140], "value_mm": [110, 143, 80, 14], "box": True, "fill": False},
    ],
}
