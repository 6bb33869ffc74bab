"""Synthetic crops that imitate the real form-field crops.

Real crops show a handwritten name (often widely spaced capitals), frequently after a printed
`NOM :`/`PRENOM :` prefix, with bits of neighbouring printed or handwritten lines cut at the top
or bottom edge, guide lines, specks, and sometimes no handwriting at all (label "").
The handwriting itself comes from the runtime's font renderer (`formreader.synth.fonts`), the
same one `formreader synth` uses; this module adds what is specific to training crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from formreader.synth.fonts import draw_handwriting, load_font

PREFIXES = ["NOM :", "PRENOM :", "NOM:", "PRENOM:", "NOM", "PRENOM", "Nom :", "Prénom :"]
NEIGHBOUR_WORDS = [
    "DATE DE NAISSANCE", "CODE RNE/UAI", "CLASSE", "PRENOM", "NOM", "SEXE", "NE(E) LE",
    "ADRESSE", "CLASSE : 4ème", "Signature", "TELEPHONE", "ETABLISSEMENT", "COMMUNE",
]
FIRST_DAY, LAST_DAY = date(1930, 1, 1).toordinal(), date(2025, 12, 31).toordinal()  # dates drawn for training
DATE_SEPARATORS = ["/", "/", "/", ".", "-", " "]


@lru_cache(maxsize=64)
def _printed_font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled scalable sans: printed labels without depending on system fonts.
    return ImageFont.load_default(size)


@dataclass
class Synthesizer:
    fonts: list[Path]
    names: list[str]
    mnist_x: np.ndarray | None = None
    mnist_y: np.ndarray | None = None
    digit_index: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mnist_y is not None:
            self.digit_index = {d: np.flatnonzero(self.mnist_y == d) for d in range(10)}

    # ---- text choices -------------------------------------------------------------
    def random_name(self, rng: np.random.Generator) -> str:
        name = self.names[int(rng.integers(len(self.names)))]
        r = rng.random()
        if r < 0.12:
            return name.title()
        if r < 0.16:
            return name.lower()
        return name

    @staticmethod
    def random_date(rng: np.random.Generator) -> tuple[str, str, str]:
        # Any calendar day: drawing days 1-28 only taught the model that a day never starts
        # with 3 (30 and 31 came out as 20, 21 or 230).
        day = date.fromordinal(int(rng.integers(FIRST_DAY, LAST_DAY + 1)))
        return f"{day.day:02d}", f"{day.month:02d}", f"{day.year:04d}"

    # ---- printed and cut-off layers around the handwriting ---------------------------
    def _render_prefix(self, rng: np.random.Generator, canvas: Image.Image, text: str) -> int:
        font = _printed_font(int(rng.integers(12, 20)))
        draw = ImageDraw.Draw(canvas)
        y = canvas.height // 2 - font.size // 2 + int(rng.integers(-3, 6))
        x = int(rng.integers(-8, 6))
        draw.text((x, y), text, font=font, fill=int(rng.integers(0, 60)))
        return x + int(draw.textlength(text, font=font))

    def _neighbours(self, rng: np.random.Generator, canvas: Image.Image) -> None:
        """Cut-off printed or handwritten lines at the top/bottom edge, and edge clutter."""
        draw = ImageDraw.Draw(canvas)
        for edge in ("top", "bottom"):
            if rng.random() > 0.22:
                continue
            if rng.random() < 0.5:
                font = _printed_font(int(rng.integers(12, 20)))
                text = str(rng.choice(NEIGHBOUR_WORDS))
            else:
                font = load_font(str(self.fonts[int(rng.integers(len(self.fonts)))]), int(rng.integers(18, 32)))
                text = self.random_name(rng)
            visible = int(rng.integers(3, max(4, font.size // 2)))
            y = -font.size + visible if edge == "top" else canvas.height - visible
            draw.text((int(rng.integers(0, canvas.width // 2)), y), text, font=font, fill=int(rng.integers(0, 90)))
        if rng.random() < 0.1:  # rotated printed digits at the left edge (cut-out form margin)
            strip = Image.new("L", (canvas.height, 14), 255)
            ImageDraw.Draw(strip).text((0, 0), str(int(rng.integers(10, 99))) + ":5", font=_printed_font(12), fill=0)
            canvas.paste(strip.rotate(90, expand=True), (0, 0))

    def _guide_line(self, rng: np.random.Generator, canvas: Image.Image, x0: int, x1: int) -> None:
        draw = ImageDraw.Draw(canvas)
        y = int(canvas.height * rng.uniform(0.72, 0.95))
        shade = int(rng.integers(60, 180))
        if rng.random() < 0.5:
            draw.line((x0, y, x1, y), fill=shade, width=int(rng.integers(1, 3)))
        else:
            step = int(rng.integers(3, 7))
            for x in range(x0, x1, step):
                draw.point((x, y), fill=shade)

    # ---- public samples -----------------------------------------------------------
    def name_crop(self, rng: np.random.Generator, blank: bool = False) -> tuple[np.ndarray, str]:
        text = "" if blank else self.random_name(rng)
        canvas = Image.new("L", (int(rng.integers(260, 420)), int(rng.integers(28, 56))), int(rng.integers(215, 256)))
        x = int(rng.integers(2, 30))
        if rng.random() < 0.45:
            x = self._render_prefix(rng, canvas, str(rng.choice(PREFIXES))) + int(rng.integers(8, 40))
        end = draw_handwriting(canvas, text, self.fonts, rng, x, int(rng.integers(0, 110))) if text else x
        if rng.random() < 0.2:
            self._guide_line(rng, canvas, 0, max(end, canvas.width // 2))
        self._neighbours(rng, canvas)
        return np.asarray(canvas, np.uint8), text

    def font_date_crop(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        day, month, year = self.random_date(rng)
        sep = str(rng.choice(DATE_SEPARATORS))
        text = f"{day}{sep}{month}{sep}{year}"
        canvas = Image.new("L", (int(rng.integers(240, 400)), int(rng.integers(30, 56))), int(rng.integers(215, 256)))
        end = draw_handwriting(canvas, text, self.fonts, rng, int(rng.integers(2, 30)), int(rng.integers(0, 110)))
        if rng.random() < 0.4:
            self._guide_line(rng, canvas, 0, max(end, canvas.width // 2))
        self._neighbours(rng, canvas)
        return np.asarray(canvas, np.uint8), text

    def _digit(self, rng: np.random.Generator, d: int, height: int) -> np.ndarray:
        idx = self.digit_index[d]
        img = self.mnist_x[idx[int(rng.integers(len(idx)))]]
        ys, xs = np.nonzero(img > 30)
        img = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else img
        scale = height / img.shape[0]
        w = max(2, int(img.shape[1] * scale * rng.uniform(0.85, 1.15)))
        return 255 - cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)

    def mnist_date_crop(self, rng: np.random.Generator, printed_slashes: bool | None = None) -> tuple[np.ndarray, str]:
        """DD/MM/YYYY composed from MNIST digits; slashes drawn by hand or printed."""
        day, month, year = self.random_date(rng)
        h = int(rng.integers(22, 36))
        pad_y = int(rng.integers(4, 14))
        canvas = np.full((h + 2 * pad_y, 420), 255, np.uint8)
        x = int(rng.integers(8, 24))  # margin: augmentation may trim a few pixels
        printed = rng.random() < 0.3 if printed_slashes is None else printed_slashes
        for gi, group in enumerate((day, month, year)):
            for ch in group:
                glyph = self._digit(rng, int(ch), h + int(rng.integers(-3, 3)))
                y = pad_y + int(rng.integers(-2, 3))
                gh, gw = glyph.shape
                if x + gw >= canvas.shape[1] or y + gh > canvas.shape[0]:
                    break
                canvas[y:y + gh, x:x + gw] = np.minimum(canvas[y:y + gh, x:x + gw], glyph)
                x += gw + int(rng.integers(-2, 6))
            if gi < 2:
                x = self._slash(rng, canvas, x, pad_y, h, printed)
        canvas = canvas[:, : min(canvas.shape[1], x + int(rng.integers(5, 60)))]
        return canvas, f"{day}/{month}/{year}"

    @staticmethod
    def _slash(rng: np.random.Generator, canvas: np.ndarray, x: int, pad_y: int, h: int, printed: bool) -> int:
        x += int(rng.integers(2, 8))
        w = int(rng.integers(6, 14))
        thick = 1 if printed else int(rng.integers(2, 4))
        shade = 40 if printed else int(rng.integers(0, 80))
        top = pad_y + int(rng.integers(-2, 4))
        cv2.line(canvas, (x + w, top), (x, pad_y + h - int(rng.integers(0, 4))), shade, thick, cv2.LINE_AA)
        return x + w + int(rng.integers(3, 9))
