"""Known label errors in the Kaggle handwriting crops (`kaggle_errata.csv`).

Each row names a crop, its label as the dataset gives it (IDENTITY) and the name its writing
shows (WRITTEN, in the dataset's own style: upper case, no accents), found by looking at the
image. Crop benchmarks score against both the labels as given and the labels with these errata
applied; `formreader synth` leaves these crops out of its forms, whose truth comes from labels.

A row applies only when both the file name and the label match, so a user's own crop folder that
happens to reuse a file name is not touched.
"""

from __future__ import annotations

import csv
from pathlib import Path

KAGGLE_ERRATA = Path(__file__).with_name("kaggle_errata.csv")


def load_errata(path: Path = KAGGLE_ERRATA) -> dict[tuple[str, str], str]:
    """(FILENAME, IDENTITY as labelled) -> the name the writing shows."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {(row["FILENAME"], row["IDENTITY"]): row["WRITTEN"] for row in csv.DictReader(fh)}


def corrected(filename: str, identity: str, errata: dict[tuple[str, str], str]) -> str:
    """The label with the errata applied (unchanged when none applies)."""
    return errata.get((filename, identity), identity)
