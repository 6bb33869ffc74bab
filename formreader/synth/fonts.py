"""Handwriting drawn with fonts: the one renderer behind synthetic forms and training crops.

One font loader (`load_font`), one font list (`font_paths`), one glyph check (`has_glyphs`) and
the two ways a name is written with them:

- `render_handwriting`: a word as its own ink image, letter by letter with per-letter jitter,
  slant and pen width (`formreader synth` pastes it into a form's box, via `FontNames`);
- `draw_handwriting`: a line drawn straight onto a crop canvas in a random font, size and letter
  spacing (the synthetic crops of `train/synth.py`, which adds printed prefixes and neighbours).

Both consume the caller's random generator in a fixed order: the same seed gives the same
pixels, which keeps the training mix of the shipped model reproducible (tests/test_fonts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from formreader.errors import InputError
from formreader.synth.handwriting import FIRST_NAMES, SURNAMES, Ink, trim


@lru_cache(maxsize=512)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def font_paths(fonts_dir: Path) -> list[Path]:
    paths = sorted(Path(fonts_dir).glob("*.ttf")) + sorted(Path(fonts_dir).glob("*.otf"))
    if not paths:
        raise InputError(f"{fonts_dir}: no .ttf/.otf handwriting fonts")
    return paths


def has_glyphs(font_path: Path, text: str) -> bool:
    """Some display fonts lack characters; a missing glyph renders as a box, not a letter."""
    font = load_font(str(font_path), 40)
    notdef = font.getmask("\uffff").getbbox()
    return all(ch == " " or font.getmask(ch).getbbox() not in (None, notdef) for ch in text)


# --- a word as its own ink image (synthetic forms) ------------------------------------------

def render_handwriting(text: str, font_path: Path, rng: np.random.Generator, size_px: int = 64) -> np.ndarray:
    """Text in a handwriting font, letter by letter, made to look written.

    Real crops are mostly spaced capitals: each letter gets its own size, baseline, tilt and
    spacing; the word then gets a slant, a pen width and a little blur.
    """
    spaced = rng.random() < 0.6
    gap = rng.uniform(0.25, 0.8) if spaced else rng.uniform(-0.02, 0.12)
    ink = int(rng.integers(10, 70))
    # Wide enough for the widest letters at the widest spacing: a clipped letter would betray the truth.
    canvas = Image.new("L", (int(size_px * (len(text) * 2.8 + 2)), size_px * 3), 255)
    x = size_px // 2
    for ch in text:
        if ch == " ":
            x += int(size_px * rng.uniform(0.5, 0.9))
            continue
        letter = _letter(ch, font_path, int(size_px * rng.uniform(0.88, 1.12)), ink, rng)
        y = int(size_px * (1.0 + rng.uniform(-0.06, 0.06))) - letter.height // 2
        canvas.paste(letter, (x, y), letter.point(lambda v: 255 - v))
        x += letter.width + int(size_px * gap * rng.uniform(0.7, 1.3))
    img = np.asarray(canvas)
    img = _slant(img, rng.uniform(-0.25, 0.2))
    img = _pen_width(img, rng)
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 0.8))
    trimmed = trim(img)
    return trimmed if trimmed is not None else img


def _letter(ch: str, font_path: Path, size: int, ink: int, rng: np.random.Generator) -> Image.Image:
    font = load_font(str(font_path), max(size, 8))
    left, top, right, bottom = font.getbbox(ch)
    img = Image.new("L", (right - left + 8, bottom - top + 8), 255)
    ImageDraw.Draw(img).text((4 - left, 4 - top), ch, font=font, fill=ink)
    return img.rotate(rng.uniform(-6, 6), resample=Image.BILINEAR, expand=True, fillcolor=255)


def _slant(img: np.ndarray, shear: float) -> np.ndarray:
    h, w = img.shape
    matrix = np.float32([[1, shear, -shear * h / 2 + abs(shear) * h], [0, 1, 0]])
    return cv2.warpAffine(img, matrix, (w + int(2 * abs(shear) * h), h), borderValue=255)


def _pen_width(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    choice = rng.random()
    kernel = np.ones((2, 2), np.uint8)
    if choice < 0.3:
        return cv2.erode(img, kernel)  # erode white = thicker ink
    if choice < 0.4:
        return cv2.dilate(img, kernel)  # thinner strokes (not too often: fine pens fade at 150 dpi)
    return img


@dataclass
class FontNames:
    """Names written with handwriting fonts: redistributable (SIL OFL), for committed samples."""

    fonts: list[Path]
    first_names: tuple[str, ...] = FIRST_NAMES
    surnames: tuple[str, ...] = SURNAMES

    @classmethod
    def load(cls, fonts_dir: Path) -> FontNames:
        return cls(font_paths(fonts_dir))

    def write(self, text: str, rng: np.random.Generator) -> Ink:
        """`text` as written (its truth is the upper-case text: people write in capitals here)."""
        fonts = [f for f in rng.permutation(self.fonts)]
        font = next((Path(f) for f in fonts if has_glyphs(Path(f), text)), Path(fonts[0]))
        return Ink(render_handwriting(text, font, rng), text.upper())

    def sample(self, rng: np.random.Generator, field_name: str = "") -> Ink:
        names = self.surnames if field_name == "NOM" else self.first_names
        return self.write(str(rng.choice(names)), rng)


# --- a line drawn onto a crop canvas (training crops) ---------------------------------------

def draw_handwriting(canvas: Image.Image, text: str, fonts: list[Path], rng: np.random.Generator, x: int, ink: int) -> int:
    """`text` across the middle of `canvas` from `x`, in a random font, size (20-37 px) and letter
    spacing (none, tight or wide); returns the x after the last letter."""
    font = load_font(str(fonts[int(rng.integers(len(fonts)))]), int(rng.integers(20, 38)))
    draw = ImageDraw.Draw(canvas)
    spacing = float(rng.choice([0.0, rng.uniform(0, 0.25), rng.uniform(0.2, 0.8)])) * font.size
    top = canvas.height // 2 - font.size // 2 + int(rng.integers(-4, 5)) - 4
    for ch in text:
        draw.text((x, top), ch, font=font, fill=ink)
        x += int(draw.textlength(ch, font=font) + spacing)
    return x
