"""Tesseract on the same crops: the baseline users try first.

Tesseract gets its best reasonable setup for single fields: one text line (`--psm 7`), French,
a character whitelist per field kind, small crops upscaled, printed prefixes painted out (as the
recognizer's own preprocessing does). Its output goes through the same normalization.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from formreader.preprocess import strip_prefix

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZÀÂÄÇÈÉÊËÎÏÔÖÙÛÜŸ-"  # no quote: the config string is shell-split
DATE_CHARS = "0123456789/"
MIN_HEIGHT = 60  # Tesseract wants x-heights of 20+ px: small crops are upscaled to this


@dataclass
class TesseractResult:
    texts: list[str]
    seconds: float
    version: str


def available() -> str | None:
    """Tesseract's version when both the program and pytesseract are installed, else None."""
    if shutil.which("tesseract") is None:
        return None
    try:
        import pytesseract

        return str(pytesseract.get_tesseract_version())
    except (ImportError, OSError, RuntimeError, ValueError):  # not installed, or the binary does not run
        return None


def _language() -> str:
    import pytesseract

    try:
        return "fra" if "fra" in pytesseract.get_languages() else "eng"
    except (OSError, RuntimeError, ValueError):
        return "eng"


def prepare(gray: np.ndarray) -> np.ndarray:
    gray = strip_prefix(gray)
    if gray.shape[0] < MIN_HEIGHT:
        factor = MIN_HEIGHT / gray.shape[0]
        gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    # A white border helps Tesseract's line finder on tight crops.
    return cv2.copyMakeBorder(gray, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=255)


def read_one(path: Path | None, kind: str, lang: str) -> str:
    import pytesseract

    if path is None:
        return ""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        return ""
    chars = DATE_CHARS if kind == "date" else NAME_CHARS
    config = f"--psm 7 -c tessedit_char_whitelist={chars}"
    try:
        return pytesseract.image_to_string(prepare(gray), lang=lang, config=config).strip()
    except (OSError, RuntimeError, ValueError):  # TesseractError is a RuntimeError; a crash on one crop is one wrong answer, not a failed benchmark
        return ""


def read_crops(paths: list[Path | None], kinds: list[str], workers: int = 2) -> TesseractResult:
    """Text per crop (same order); one Tesseract process per crop, `workers` at a time."""
    version = available() or "unavailable"
    lang = _language()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        texts = list(pool.map(lambda pk: read_one(pk[0], pk[1], lang), zip(paths, kinds)))
    return TesseractResult(texts, time.perf_counter() - start, version)
