"""Scores shared by the per-epoch log and `python -m train evaluate`."""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein


def name_form(text: str) -> str:
    """How name fields are compared and shown: upper case, single spaces (runtime rule)."""
    return " ".join(text.upper().split())


@dataclass
class Score:
    cer: float
    exact: float
    count: int


def score(preds: list[str], truths: list[str]) -> Score:
    """Character error rate (total edits / total reference chars) and exact-match rate."""
    edits = sum(Levenshtein.distance(p, t) for p, t in zip(preds, truths))
    chars = sum(max(len(t), 1) for t in truths)  # blank fields count as one character
    exact = sum(p == t for p, t in zip(preds, truths))
    n = max(len(truths), 1)
    return Score(cer=edits / chars, exact=exact / n, count=len(truths))
