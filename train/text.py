"""Label text <-> class ids, and the text clean-up applied to every training label."""

from __future__ import annotations

import unicodedata

import numpy as np

# Characters outside the alphabet that have an obvious in-alphabet spelling.
_FOLD = {"ß": "ss", "’": "'", "‘": "'", "–": "-", "—": "-", "_": "-", "ﬁ": "fi", "ﬂ": "fl"}


def clean_label(text: str, alphabet: str) -> str | None:
    """Map a label onto the alphabet; None when it still holds unknown characters."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(_FOLD.get(ch, ch) for ch in text)
    text = " ".join(text.split())
    if any(ch not in alphabet for ch in text):
        return None
    return text


def encode(text: str, alphabet: str, max_len: int) -> np.ndarray:
    """Label -> int32 ids padded with 0 (blank, which keras.losses.CTC reads as padding)."""
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    ids = np.zeros(max_len, np.int32)
    codes = [index[ch] for ch in text[:max_len]]
    ids[: len(codes)] = codes
    return ids


def cer_counts(pred: str, truth: str) -> tuple[int, int]:
    """(edit distance, reference length) for one pair."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(pred, truth), len(truth)
