"""Labelled sets the benchmark reads.

- A form set: a folder of scans (PDF, JPEG, PNG, TIFF) and `truth.csv` (FILE, PAGE, one column per
  field; empty = blank; dates ISO).
- A crop set: single-field crops and `labels.csv` in the Kaggle format (FILENAME, IDENTITY and an
  optional SPLIT); images beside the CSV or in `images/`. IDENTITY `EMPTY` expects "" and
  `UNREADABLE` is not scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from formreader.errors import InputError
from formreader.fields import normalize_name, parse_date

TRUTH_FILE = "truth.csv"
LABELS_FILE = "labels.csv"
CROP_FIELD = "NAME"  # crop sets are one field each; they are name crops in the Kaggle format
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class FormSet:
    root: Path
    files: list[Path]
    fields: list[str]  # truth columns that are template fields, in template order
    truth: dict[tuple[str, int], dict[str, str]]  # (FILE relative to root, PAGE) -> field -> raw truth
    ignored: list[str]  # truth columns the template does not know


@dataclass
class CropItem:
    path: Path
    truth: str  # "" for EMPTY


@dataclass
class CropSet:
    root: Path
    items: list[CropItem]
    skipped: int  # UNREADABLE labels


def load_set(path: Path, field_names: list[str], split: str | None = None) -> FormSet | CropSet:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (a labelled set is a folder with {TRUTH_FILE} or {LABELS_FILE})")
    if (path / TRUTH_FILE).is_file():
        return load_form_set(path, field_names)
    if (path / LABELS_FILE).is_file():
        return load_crop_set(path, split)
    raise InputError(f"{path}: neither {TRUTH_FILE} (form set) nor {LABELS_FILE} (crop set) found")


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    return table


def load_form_set(root: Path, field_names: list[str]) -> FormSet:
    table = _read_csv(root / TRUTH_FILE, ["FILE", "PAGE"])
    columns = [c for c in table.columns if c not in ("FILE", "PAGE")]
    fields = [f for f in field_names if f in columns]
    if not fields:
        raise InputError(f"{root / TRUTH_FILE}: no column matches the template's fields {field_names}")
    truth: dict[tuple[str, int], dict[str, str]] = {}
    for row in table.to_dict("records"):
        try:
            key = (Path(row["FILE"]).as_posix(), int(row["PAGE"]))
        except ValueError as exc:
            raise InputError(f"{root / TRUTH_FILE}: bad PAGE {row['PAGE']!r}") from exc
        truth[key] = {f: str(row[f]).strip() for f in fields}
    files = sorted({root / f for f, _ in truth})
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise InputError(f"{root}: files listed in {TRUTH_FILE} are missing: {', '.join(absent[:5])}")
    return FormSet(root, files, fields, truth, [c for c in columns if c not in field_names])


def load_crop_set(root: Path, split: str | None = None) -> CropSet:
    table = _read_csv(root / LABELS_FILE, ["FILENAME", "IDENTITY"])
    if split:
        if "SPLIT" not in table.columns:
            raise InputError(f"{root / LABELS_FILE}: --split {split} given but there is no SPLIT column")
        table = table[table["SPLIT"] == split]
    images = root / "images" if (root / "images").is_dir() else root
    items, skipped = [], 0
    for name, identity in zip(table["FILENAME"], table["IDENTITY"]):
        identity = identity.strip()
        if identity == "UNREADABLE":
            skipped += 1
            continue
        items.append(CropItem(images / name, "" if identity == "EMPTY" else identity))
    if not items:
        raise InputError(f"{root / LABELS_FILE}: no labelled crops" + (f" in split {split!r}" if split else ""))
    return CropSet(root, items, skipped)


def normalize_truth(text: str, kind: str) -> str:
    """Truth in the form the pipeline writes: names upper-case and cleaned, dates ISO."""
    if kind == "date":
        if not text or _ISO.match(text):
            return text
        value, _, _ = parse_date(text)
        return value
    return normalize_name(text)


def normalize_prediction(text: str, kind: str) -> str:
    """Predictions are already normalized by the pipeline; baselines go through the same rules."""
    return normalize_truth(text, kind)
