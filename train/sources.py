"""Loaders for the labelled image sources under the shared data root.

Every loader returns an `ImageSet` of raw gray uint8 crops with labels already mapped onto the
model alphabet; augmentation and `normalize_crop` happen later, per sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from formreader.paths import REPO_ROOT
from formreader.synth import fonts as synth_fonts
from train.text import clean_label

def repo_path(path: str | os.PathLike) -> Path:
    """Config paths are relative to the repository root, never to the working directory."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


@dataclass
class ImageSet:
    images: list[np.ndarray]
    texts: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        i = int(rng.integers(len(self.images)))
        return self.images[i], self.texts[i]


def _read_gray(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _image_set(folder: Path, rows: list[tuple[str, str]], alphabet: str) -> ImageSet:
    images, texts, names = [], [], []
    for name, raw in rows:
        text = clean_label(raw, alphabet)
        image = _read_gray(folder / name) if text is not None else None
        if image is None or image.size == 0:
            continue
        images.append(image)
        texts.append(text)
        names.append(name)
    return ImageSet(images, texts, names)


def kaggle_split(root: Path, split: str, alphabet: str, limit: int = 0) -> ImageSet:
    """Labelled Kaggle crops of one dev split; EMPTY -> "", UNREADABLE skipped."""
    base = root / "data" / "kaggle-names" / "dev"
    table = pd.read_csv(base / "labels.csv", keep_default_na=False)
    table = table[(table.SPLIT == split) & (table.IDENTITY != "UNREADABLE")]
    rows = [(f, "" if t == "EMPTY" else t) for f, t in zip(table.FILENAME, table.IDENTITY)]
    return _image_set(base / "images", rows[: limit or None], alphabet)


def pseudo_labelled(root: Path, csv_path: Path, alphabet: str) -> ImageSet:
    """Unlabelled Kaggle crops with labels proposed by `python -m train pseudolabel`."""
    table = pd.read_csv(csv_path, keep_default_na=False)
    rows = list(zip(table.FILENAME, table.IDENTITY))
    return _image_set(root / "data" / "kaggle-names" / "unlabelled" / "images", rows, alphabet)


def labelled_files(csv_path: Path, alphabet: str) -> ImageSet:
    """Crops listed by path (absolute, or relative to the CSV's folder) with their labels."""
    table = pd.read_csv(csv_path, keep_default_na=False, dtype=str)
    return _image_set(Path(csv_path).parent, list(zip(table.FILENAME, table.IDENTITY)), alphabet)


def dhsd_words(root: Path, alphabet: str) -> ImageSet:
    base = root / "data" / "htr-words-de" / "dhsd"
    table = pd.read_csv(base / "labels.csv", keep_default_na=False)
    return _image_set(base, list(zip(table.FILENAME, table.TEXT)), alphabet)


def _line_label(text: str) -> str | None:
    # Struck-out text and superscripts cannot be read back from a squeezed line: drop the line.
    if any(mark in text for mark in "><^[]"):
        return None
    return text


def htr_lines(root: Path, alphabet: str, max_chars: int = 26, max_aspect: float = 7.0) -> ImageSet:
    """Short French HTR lines only: long lines would be squeezed past legibility at 64x256."""
    out = ImageSet([], [], [])
    base = root / "data" / "htr-lines-fr"
    for folder in sorted(p for p in base.iterdir() if (p / "labels.csv").exists()):
        table = pd.read_csv(folder / "labels.csv", keep_default_na=False)
        rows = [(f, t) for f, t in zip(table.FILENAME, table.TEXT) if 0 < len(t) <= max_chars and _line_label(t)]
        part = _image_set(folder, rows, alphabet)
        for image, text, name in zip(part.images, part.texts, part.names):
            if image.shape[1] <= max_aspect * image.shape[0]:
                out.images.append(image)
                out.texts.append(text)
                out.names.append(f"{folder.name}/{name}")
    return out


def unlabelled_paths(root: Path) -> list[Path]:
    return sorted((root / "data" / "kaggle-names" / "unlabelled" / "images").glob("*.jpg"))


def load_mnist(root: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(root / "data" / "digits" / "mnist_train.npz") as data:
        return data["x"], data["y"]


def names_list(root: Path) -> list[str]:
    table = pd.read_csv(root / "data" / "kaggle-names" / "names.csv", keep_default_na=False)
    return [n for n in table.NAME.astype(str) if n and n not in ("EMPTY", "UNREADABLE")]


def font_paths(root: Path) -> list[Path]:
    return synth_fonts.font_paths(root / "fonts")
