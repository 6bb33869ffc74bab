"""`python -m train pack`: a compact copy of the shared subset that training reads, in the same
folder layout, for a remote training machine (pass it there as --data-root).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pandas as pd

from train.sources import _line_label


def _reencode(src: Path, dst: Path, quality: int = 75) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    image = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(dst), image, [cv2.IMWRITE_JPEG_QUALITY, quality])


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def pack(root: Path, out: Path) -> None:
    kaggle = Path("data/kaggle-names")
    for rel in [kaggle / "dev/labels.csv", kaggle / "names.csv", Path("data/digits/mnist_train.npz")]:
        _copy(root / rel, out / rel)
    for src in (root / kaggle / "dev/images").glob("*.jpg"):
        _copy(src, out / kaggle / "dev/images" / src.name)
    for src in (root / kaggle / "unlabelled/images").glob("*.jpg"):
        _reencode(src, out / kaggle / "unlabelled/images" / src.name)
    for src in (root / "fonts").glob("*.ttf"):
        _copy(src, out / "fonts" / src.name)
    dhsd = Path("data/htr-words-de/dhsd")
    table = pd.read_csv(root / dhsd / "labels.csv", keep_default_na=False)
    table.to_csv((out / dhsd).mkdir(parents=True, exist_ok=True) or out / dhsd / "labels.csv", index=False)
    for name in table.FILENAME:
        _reencode(root / dhsd / name, out / dhsd / name, quality=60)
    _pack_lines(root, out)


def _pack_lines(root: Path, out: Path, max_chars: int = 26, max_aspect: float = 7.0) -> None:
    base = Path("data/htr-lines-fr")
    for folder in sorted(p for p in (root / base).iterdir() if (p / "labels.csv").exists()):
        table = pd.read_csv(folder / "labels.csv", keep_default_na=False)
        keep = table[[0 < len(t) <= max_chars and bool(_line_label(t)) for t in table.TEXT]]
        dst = out / base / folder.name
        (dst / "images").mkdir(parents=True, exist_ok=True)
        kept = []
        for name in keep.FILENAME:
            image = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
            if image is not None and image.shape[1] <= max_aspect * image.shape[0]:
                cv2.imwrite(str(dst / name), image, [cv2.IMWRITE_JPEG_QUALITY, 75])
                kept.append(name)
        keep[keep.FILENAME.isin(kept)].to_csv(dst / "labels.csv", index=False)
