"""Draw a blank form from its layout: for tests, the sample generator and forms without a scan."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from formreader.template import Layout, Template


def _font(size_px: float, bold: bool = False) -> ImageFont.ImageFont:
    # Pillow's bundled font needs no system fonts (CI machines have none).
    return ImageFont.load_default(size=max(6, int(round(size_px * (1.1 if bold else 1.0)))))


def render_layout(layout: Layout, dpi: float = 200.0) -> np.ndarray:
    """The blank page a layout describes, gray uint8 at `dpi`."""
    s = dpi / 25.4
    w, h = int(round(layout.page_mm[0] * s)), int(round(layout.page_mm[1] * s))
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    line = max(1, int(round(0.3 * s)))
    raw = layout.raw
    for item in raw.get("printed", []):
        size = float(item.get("size_mm", 4.0)) * s
        x, y = item["mm"]
        draw.text((x * s, y * s), item["text"], fill=0, font=_font(size, item.get("bold", False)), anchor="ls")
    for x0, y0, x1, y1 in raw.get("rules", []):
        draw.line([(x0 * s, y0 * s), (x1 * s, y1 * s)], fill=0, width=line)
    for x, y, bw, bh in raw.get("boxes", []):
        draw.rectangle([x * s, y * s, (x + bw) * s, (y + bh) * s], outline=0, width=line)
    for f in layout.fields:
        _draw_field(draw, f, s, line)
    return np.asarray(img)


def _draw_field(draw: ImageDraw.ImageDraw, f, s: float, line: int) -> None:
    x, y, w, h = f.value_mm
    if f.label:
        lx, ly = f.label_mm
        draw.text((lx * s, ly * s), f.label, fill=0, font=_font(4.0 * s), anchor="ls")
    if f.box:
        draw.rectangle([x * s, y * s, (x + w) * s, (y + h) * s], outline=0, width=line)
    if f.underline:
        base = (y + h) * s
        draw.line([(x * s, base), ((x + w) * s, base)], fill=0, width=line)
    for dx in f.slashes_mm:
        cx = (x + dx) * s
        draw.line([(cx + 1.2 * s, (y + 0.25 * h) * s), (cx - 1.2 * s, (y + 0.85 * h) * s)], fill=0, width=line)


def template_from_layout(layout: Layout, dpi: float = 200.0) -> Template:
    """A template whose blank is drawn from the layout itself (no scan of the blank needed)."""
    return Template(layout=layout, blank=render_layout(layout, dpi), dpi=dpi)
