"""`python -m train pseudolabel`: propose labels for the unlabelled Kaggle crops (self-training).

Two teachers:

- `crnn` (the first rounds): the CRNN's beam + lexicon reading. A crop is kept when the model is
  confident, and, if its reading is not a known name, only when it is more confident (the
  lexicon covers ~65% of real names, so unknown names are held to a higher bar, not dropped).
- `ensemble`: the run-time reader with both recognizers (CRNN + PP-OCRv5, product of experts) and
  the names lexicon (`formreader.recognize.ensemble`). Each model's own greedy reading is kept
  beside the teacher's, and a crop is kept only when both models alone already read the teacher's
  text (agreement) and the teacher is confident as above.

Thresholds are chosen on the labelled dev `train` split (`--split train` labels those crops and
prints how often each kept label is right); `val` is never used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from formreader.recognize.decoding import beam_decode, greedy_text
from train import sources
from train.evaluate import OnnxReader, resolve_lexicon
from train.metrics import name_form

CHUNK = 128


def _images(paths: list[Path]):
    import cv2

    for start in range(0, len(paths), CHUNK):
        chunk = paths[start:start + CHUNK]
        yield chunk, [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in chunk]


def crnn_readings(model: Path, paths: list[Path], root: Path) -> pd.DataFrame:
    reader = OnnxReader(model)
    lexicon = resolve_lexicon("default", root)
    rows = []
    for chunk, images in _images(paths):
        for path, probs in zip(chunk, reader.probs(images)):
            text, conf = beam_decode(probs, reader.spec.alphabet, lexicon=lexicon)
            text = name_form(text)
            rows.append((path.name, text, round(conf, 4), lexicon is not None and text in lexicon))
    return pd.DataFrame(rows, columns=["FILENAME", "IDENTITY", "CONFIDENCE", "IN_LEXICON"])


def _greedy(probs: np.ndarray, alphabet: str) -> str:
    return name_form(greedy_text(probs, alphabet))


ENSEMBLE_COLUMNS = ["FILENAME", "IDENTITY", "CONFIDENCE", "IN_LEXICON", "CRNN", "PPOCR"]


def ensemble_readings(model: Path, paths: list[Path], root: Path, partial: Path, threads: int = 2) -> pd.DataFrame:
    """Teacher reading (both models + lexicon, name grammar) and each model's own greedy reading.

    The teacher is only run where the two models' own readings are the same: elsewhere it could
    not agree with both anyway (IDENTITY stays empty, CONFIDENCE 0). Rows are appended to
    `partial` chunk by chunk, and a re-run skips the crops already there (long runs resume).
    """
    from formreader.recognize.ensemble import load_reader
    from formreader.recognize.predictor import RecognizerSettings

    names = root / "data" / "kaggle-names" / "names.csv"
    reader = load_reader(model, RecognizerSettings(device="cpu", threads=threads, second_opinion="always",
                                                   lexicon=names if names.exists() else None))
    lexicon = reader.lexicon
    done = set(pd.read_csv(partial, keep_default_na=False).FILENAME) if partial.exists() else set()
    todo = [p for p in paths if p.name not in done]
    if done:
        print(f"resuming: {len(done)} crops already read in {partial}")
    for chunk, images in _images(todo):
        crnn, _ = reader.primary.probabilities(images)
        ppocr, _ = reader.second.probabilities(images)
        experts = [[reader.folders[0](p1), reader.folders[1](p2)] for p1, p2 in zip(crnn, ppocr)]
        own = [(_greedy(e[0], reader.alphabet), _greedy(e[1], reader.alphabet)) for e in experts]
        agree = [i for i, (a, b) in enumerate(own) if a == b]
        # what the run-time reader returns for these crops
        teacher = dict(zip(agree, reader.decode([experts[i] for i in agree], ["name"] * len(agree))))
        rows = []
        for i, path in enumerate(chunk):
            text, confidence = "", 0.0
            if i in teacher:
                text, confidence = name_form(teacher[i].text), round(teacher[i].confidence, 4)
            rows.append((path.name, text, confidence, lexicon is not None and text in lexicon, *own[i]))
        pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS).to_csv(partial, mode="a", header=not partial.exists(), index=False)
        done.update(p.name for p in chunk)
        print(f"  {len(done)}/{len(paths)} crops read", flush=True)
    table = pd.read_csv(partial, keep_default_na=False)
    table = table[table.FILENAME.isin({p.name for p in paths})].reset_index(drop=True)
    table["AGREE"] = (table.CRNN == table.IDENTITY) & (table.PPOCR == table.IDENTITY)
    return table


def keep_mask(table: pd.DataFrame, min_confidence: float, unknown_confidence: float) -> pd.Series:
    keep = (table.CONFIDENCE >= min_confidence) & (table.IN_LEXICON | (table.CONFIDENCE >= unknown_confidence))
    return keep & table.AGREE if "AGREE" in table else keep


def _crops(root: Path, split: str) -> tuple[list[Path], dict[str, str] | None]:
    if split == "unlabelled":
        return sources.unlabelled_paths(root), None
    if split != "train":
        raise SystemExit(f"--split {split}: choose unlabelled or train (val is never pseudo-labelled)")
    base = root / "data" / "kaggle-names" / "dev"
    table = pd.read_csv(base / "labels.csv", keep_default_na=False)
    table = table[(table.SPLIT == "train") & (table.IDENTITY != "UNREADABLE")]
    truth = {f: name_form("" if t == "EMPTY" else t) for f, t in zip(table.FILENAME, table.IDENTITY)}
    return [base / "images" / f for f in table.FILENAME], truth


def report_precision(table: pd.DataFrame, truth: dict[str, str], keep: pd.Series) -> None:
    """On the labelled train split: how many labels each rule keeps and how many of them are right."""
    right = table.FILENAME.map(truth) == table.IDENTITY
    rules = {"all readings": pd.Series(True, index=table.index), "kept (this rule)": keep}
    if "AGREE" in table:
        rules["agreement only"] = table.AGREE
    for threshold in (0.3, 0.5, 0.7, 0.9):
        rules[f"confidence >= {threshold}"] = table.CONFIDENCE >= threshold
    for name, mask in rules.items():
        print(f"  {name:22s} kept {int(mask.sum()):5d}/{len(table)}  right {right[mask].mean():.1%}")


def pseudolabel(model: Path, root: Path, output: Path, min_confidence: float, unknown_confidence: float,
                teacher: str = "crnn", split: str = "unlabelled", threads: int = 2, reuse: bool = False,
                limit: int = 0) -> Path:
    paths, truth = _crops(root, split)
    paths = paths[:limit or None]
    if reuse:  # new thresholds on the readings of an earlier run
        table = pd.read_csv(output.with_suffix(".all.csv"), keep_default_na=False)
    elif teacher == "ensemble":
        output.parent.mkdir(parents=True, exist_ok=True)
        table = ensemble_readings(model, paths, root, output.with_suffix(".partial.csv"), threads)
    elif teacher == "crnn":
        table = crnn_readings(model, paths, root)
    else:
        raise SystemExit(f"--teacher {teacher}: choose crnn or ensemble")
    table["IDENTITY"] = table.IDENTITY.where(table.IDENTITY != "", "EMPTY")
    keep = keep_mask(table, min_confidence, unknown_confidence)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output.with_suffix(".all.csv"), index=False)
    kept = table[keep].copy()
    kept["IDENTITY"] = kept.IDENTITY.replace("EMPTY", "")
    kept.to_csv(output, index=False)
    print(f"kept {len(kept)} of {len(table)} crops ({kept.IN_LEXICON.mean():.0%} in lexicon) -> {output}")
    if truth is not None:
        report_precision(table.assign(IDENTITY=table.IDENTITY.replace("EMPTY", "")), truth, keep)
    return output
