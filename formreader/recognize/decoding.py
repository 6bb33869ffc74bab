"""CTC decoding of recognizer output: (T, C) probabilities -> (text, confidence)."""

from __future__ import annotations

import numpy as np


def greedy_decode(probs: np.ndarray, alphabet: str, blank: int = 0) -> tuple[str, float]:
    """Best path: argmax per step, collapse repeats, drop blanks.

    Confidence is the product of the per-step maxima along the best path, so one doubtful
    character pulls the whole field down (that is what review flags need).
    """
    best = probs.argmax(axis=-1)
    peak = probs.max(axis=-1)
    chars: list[str] = []
    prev = blank
    for k in best:
        if k != blank and k != prev:
            chars.append(alphabet[k - 1])
        prev = k
    confidence = float(np.exp(np.sum(np.log(np.clip(peak, 1e-12, 1.0)))))
    return "".join(chars), confidence
