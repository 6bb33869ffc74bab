"""Sources of handwriting ink for synthetic forms.

Every source returns an `Ink`: a gray uint8 image, paper 255, trimmed to the writing, and the
text it shows. Real sources (Kaggle name crops, MNIST digits) give real handwriting; the font
source (`FontNames`, in fonts.py with the renderer it shares with training) renders
redistributable handwriting-style fonts with per-letter jitter so it looks written, not typeset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from formreader.benchmark.errata import load_errata
from formreader.errors import InputError
from formreader.preprocess import find_prefix_end, ink_bbox, main_lines, text_lines

# MNIST train images 50000-59999 are reserved for evaluation dates; training uses 0-49999.
MNIST_RESERVED = slice(50000, 60000)
MNIST_TRAINING = slice(0, 50000)
NAME_SOURCES = ("kaggle-val", "kaggle-train", "fonts")
DIGIT_SPLITS = ("reserved", "train")

# Common French first names and surnames (facts, no licence attached): the names the font source
# writes, so samples made from it carry nothing from the Kaggle dataset.
FIRST_NAMES = (
    "LEA", "EMMA", "CHLOE", "MANON", "CAMILLE", "SARAH", "INES", "JADE", "LOUISE", "ZOE", "LINA", "ALICE",
    "CLARA", "JULIETTE", "MARIE", "ANNA", "ROSE", "AMBRE", "LOLA", "NORA", "MAELYS", "ELISE", "CHARLOTTE",
    "LUCAS", "HUGO", "LOUIS", "GABRIEL", "ARTHUR", "JULES", "ADAM", "RAPHAEL", "NATHAN", "ETHAN", "TOM",
    "THEO", "MAEL", "SACHA", "PAUL", "NOAH", "YANIS", "MATHIS", "ENZO", "LEO", "TIMEO", "AXEL", "SAMUEL",
    "JEAN-PIERRE", "ANNE-SOPHIE", "MARIE-LOU", "PIERRE", "SOFIANE", "KARIM", "MOHAMED", "AYA", "YASMINE",
)
SURNAMES = (
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU", "LAURENT",
    "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL", "FOURNIER", "GIRARD",
    "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT", "MULLER", "LEFEVRE", "FAURE", "ANDRE",
    "MERCIER", "BLANC", "GUERIN", "BOYER", "GARNIER", "CHEVALIER", "FRANCOIS", "LEGRAND", "GAUTHIER",
    "GARCIA", "PERRIN", "ROBIN", "CLEMENT", "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER",
    "MASSON", "MARCHAND", "DUVAL", "DENIS", "DUMONT", "MARIE", "LEMAIRE", "NOEL", "MEYER", "DUFOUR",
    "BEN SALEM", "NGUYEN", "DA SILVA", "LE GALL", "BENOIT-DUPRE",
)
CLASS_VALUES = ("6EME", "5EME", "4EME", "3EME", "CM1", "CM2", "CE1", "CE2", "CP", "2NDE")
# Optional free-text fields (a town, on the bundled inscription-b) get places, not classes: a class
# such as 5EME in a town's box is a value no real form holds there.
TOWN_VALUES = (
    "PARIS", "LYON", "MARSEILLE", "TOULOUSE", "NICE", "NANTES", "STRASBOURG", "MONTPELLIER", "BORDEAUX",
    "LILLE", "RENNES", "REIMS", "SAINT-ETIENNE", "LE HAVRE", "TOULON", "GRENOBLE", "DIJON", "ANGERS",
    "NIMES", "VILLEURBANNE", "CLERMONT-FERRAND", "AIX-EN-PROVENCE", "BREST", "LIMOGES", "TOURS", "AMIENS",
    "PERPIGNAN", "METZ", "BESANCON", "ORLEANS", "ROUEN", "MULHOUSE", "CAEN", "NANCY", "ROUBAIX", "AVIGNON",
    "POITIERS", "PAU", "LA ROCHELLE", "CALAIS", "BEZIERS", "ANNECY", "COLMAR", "QUIMPER", "VALENCE",
    "L'HAY-LES-ROSES", "SAINT-DENIS", "VANNES", "LORIENT", "TROYES",
)


@dataclass
class Ink:
    """Handwriting on white: gray uint8 (paper 255) trimmed to its ink, and what it says."""

    image: np.ndarray
    text: str


def paperize(gray: np.ndarray) -> np.ndarray:
    """Stretch a scanned crop so its paper is pure white: pasting it by multiplication then
    darkens only where there is ink and leaves the form's own lines visible."""
    paper = float(np.percentile(gray, 90))
    ink = float(np.percentile(gray, 1))
    if paper - ink < 30:
        return np.full_like(gray, 255)
    out = (gray.astype(np.float32) - ink) * (255.0 / (paper - ink))
    return np.clip(out, 0, 255).astype(np.uint8)


def trim(gray: np.ndarray) -> np.ndarray | None:
    box = ink_bbox(gray)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return gray[y0:y1, x0:x1]


# --- real name crops (Kaggle format) -------------------------------------------------------

def clean_name_crop(gray: np.ndarray) -> np.ndarray | None:
    """Cut the printed prefix (`NOM :`) off a name crop and trim it to the handwriting."""
    return _trimmed_ink(_without_prefix(gray))


def holds_other_lines(gray: np.ndarray) -> bool:
    """Whether a name crop, once its printed prefix is cut, holds another line of text at least
    half as tall as its tallest (the cut-off foot of a line above is smaller, and the trim drops it).

    Asked of the crop before it is trimmed: the trim keeps the tallest line, which may be the
    printed one ("CODE RNE / UAI : 0908585" over a smaller handwritten "PEZOT")."""
    return _holds_other_lines(_without_prefix(gray))


def _without_prefix(gray: np.ndarray) -> np.ndarray:
    end = find_prefix_end(gray)
    return gray if end is None else gray[:, end + 1 :]


def _trimmed_ink(cut: np.ndarray) -> np.ndarray | None:
    if cut.size == 0:
        return None
    trimmed = trim(cut)
    return None if trimmed is None else paperize(trimmed)


def _holds_other_lines(cut: np.ndarray) -> bool:
    return cut.size > 0 and len(main_lines(cut)) > 1


@dataclass
class CropNames:
    """Real handwritten names from a Kaggle-format folder (labels.csv + images/), one split.

    Crops are drawn without replacement (a shuffled cycle), so a set uses every crop before it
    repeats one. Crops that still hold a printed line of their original form (a `NOM` label
    above the writing, the foot of a line cut off above it) are left out: no real field box
    holds them. They stay in crop-level evaluation, where they are the real domain. Crops whose
    label is known to be wrong (`benchmark/errata.py`) are left out too: a form's truth is the label.
    """

    inks: list[Ink]
    excluded: int = 0  # crops left out for holding printed lines
    mislabelled: int = 0  # crops left out for a known wrong label
    _order: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def load(cls, folder: Path, split: str | None) -> CropNames:
        labels = Path(folder) / "labels.csv"
        try:
            table = pd.read_csv(labels, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{labels}: cannot read crop labels ({exc})") from exc
        if split and "SPLIT" in table.columns:
            table = table[table["SPLIT"] == split]
        inks, excluded, mislabelled, errata = [], 0, 0, load_errata()
        for name, identity in zip(table["FILENAME"], table["IDENTITY"]):
            if identity in ("EMPTY", "UNREADABLE", ""):
                continue  # blanks are made on purpose by the filler; unreadable has no truth
            if (name, identity) in errata:
                mislabelled += 1
                continue
            gray = cv2.imread(str(Path(folder) / "images" / name), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                continue
            cut = _without_prefix(gray)  # the prefix search runs once for both questions below
            cleaned = _trimmed_ink(cut)
            if cleaned is not None and (_holds_other_lines(cut) or len(text_lines(cleaned)) > 1):
                excluded += 1  # a printed line kept in the writing's place, or beside it
            elif cleaned is not None:
                inks.append(Ink(cleaned, identity.strip().upper()))
        if not inks:
            raise InputError(f"{folder}: no usable name crops for split {split!r}")
        return cls(inks, excluded, mislabelled)

    def sample(self, rng: np.random.Generator, field_name: str = "") -> Ink:
        if not self._order:
            self._order = list(rng.permutation(len(self.inks)))
        return self.inks[self._order.pop()]


# --- handwritten dates from MNIST digits ---------------------------------------------------

@dataclass
class Digits:
    """MNIST digits of one split, indexed by value; black ink on white, trimmed."""

    images: np.ndarray  # (N, 28, 28) white-on-black as stored
    labels: np.ndarray

    @classmethod
    def load(cls, npz: Path, split: str = "reserved") -> Digits:
        if split not in DIGIT_SPLITS:
            raise InputError(f"unknown digit split {split!r} (choose {', '.join(DIGIT_SPLITS)})")
        try:
            data = np.load(npz)
            x, y = data["x"], data["y"]
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{npz}: cannot read MNIST digits ({exc})") from exc
        part = MNIST_RESERVED if split == "reserved" else MNIST_TRAINING
        return cls(x[part], y[part])

    def __post_init__(self) -> None:
        self._by_value = {d: np.flatnonzero(self.labels == d) for d in range(10)}

    def digit(self, value: int, rng: np.random.Generator) -> np.ndarray:
        pool = self._by_value[value]
        img = 255 - self.images[int(pool[rng.integers(len(pool))])]
        ys, xs = np.nonzero(img < 200)
        return img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def random_birth_date(rng: np.random.Generator, first: int = 1990, last: int = 2020) -> date:
    start, end = date(first, 1, 1).toordinal(), date(last, 12, 31).toordinal()
    return date.fromordinal(int(rng.integers(start, end + 1)))


def write_digits(text: str, digits: Digits, rng: np.random.Generator, height: int) -> np.ndarray:
    """Digits (and hand-drawn slashes) side by side on a common baseline, as one ink image."""
    parts = []
    for ch in text:
        if ch == "/":
            parts.append(_slash(height, rng))
            continue
        d = digits.digit(int(ch), rng)
        h = int(height * rng.uniform(0.9, 1.05))
        w = max(2, round(d.shape[1] * h / d.shape[0]))
        parts.append(cv2.resize(d, (w, h), interpolation=cv2.INTER_AREA))
    gap = max(1, int(height * rng.uniform(0.05, 0.35)))
    total_w = sum(p.shape[1] for p in parts) + gap * (len(parts) + 1)
    canvas = np.full((int(height * 1.25), total_w), 255, np.uint8)
    x = gap
    for p in parts:
        y = canvas.shape[0] - p.shape[0] - int(rng.integers(0, max(1, height // 10)))
        canvas[y : y + p.shape[0], x : x + p.shape[1]] = np.minimum(canvas[y : y + p.shape[0], x : x + p.shape[1]], p)
        x += p.shape[1] + gap
    out = trim(canvas)
    return out if out is not None else canvas


def _slash(height: int, rng: np.random.Generator) -> np.ndarray:
    w = max(4, int(height * rng.uniform(0.35, 0.55)))
    img = np.full((height, w + 4), 255, np.uint8)
    thickness = max(2, round(height * rng.uniform(0.06, 0.1)))
    cv2.line(img, (2, height - 2), (w + 1, 1), int(rng.integers(0, 60)), thickness, cv2.LINE_AA)
    return img
