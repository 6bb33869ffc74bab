"""Reading metrics on (truth, prediction) pairs that are already normalized.

CER and WER are micro-averaged: summed edit distances over summed truth lengths, so long names
weigh more than short ones, as in the usual HTR definition. A blank truth has length 0: a
prediction there adds its full length to the errors (a hallucination on an empty field costs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rapidfuzz.distance import Levenshtein


@dataclass
class Item:
    """One scored field: where it came from, what was expected, what was read."""

    source: str  # "file#page" for forms, the crop file for crop sets
    field: str
    truth: str
    pred: str
    confidence: float
    needs_review: bool
    crop: Path | None = None  # the crop image the recognizer saw (for the error page and baselines)
    page_key: str = ""  # items of one page share it (accuracy versus coverage is per page)

    @property
    def correct(self) -> bool:
        return self.pred == self.truth


@dataclass
class Scores:
    n: int
    exact_match: float
    cer: float
    wer: float
    blank_precision: float | None  # of the fields read as blank, how many were blank
    blank_recall: float | None  # of the blank fields, how many were read as blank
    blanks: int  # blank truths

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def char_errors(pred: str, truth: str) -> int:
    return Levenshtein.distance(pred, truth)


def word_errors(pred: str, truth: str) -> int:
    # rapidfuzz compares any sequences of hashables: lists of words give a word edit distance.
    return Levenshtein.distance(pred.split(), truth.split())


def cer(pred: str, truth: str) -> float:
    """Character error rate of one pair (1.0 for any text where nothing was expected)."""
    if not truth:
        return 0.0 if not pred else 1.0
    return char_errors(pred, truth) / len(truth)


def score(pairs: Sequence[tuple[str, str]]) -> Scores:
    """Scores of (truth, prediction) pairs."""
    n = len(pairs)
    if n == 0:
        return Scores(0, 0.0, 0.0, 0.0, None, None, 0)
    exact = sum(t == p for t, p in pairs)
    chars = sum(len(t) for t, _ in pairs)
    words = sum(len(t.split()) for t, _ in pairs)
    c_err = sum(char_errors(p, t) for t, p in pairs)
    w_err = sum(word_errors(p, t) for t, p in pairs)
    blank_true = sum(1 for t, _ in pairs if not t)
    blank_pred = sum(1 for _, p in pairs if not p)
    both = sum(1 for t, p in pairs if not t and not p)
    return Scores(
        n=n,
        exact_match=exact / n,
        cer=c_err / chars if chars else float(c_err > 0),
        wer=w_err / words if words else float(w_err > 0),
        blank_precision=both / blank_pred if blank_pred else None,
        blank_recall=both / blank_true if blank_true else None,
        blanks=blank_true,
    )


def score_items(items: Iterable[Item], fields: list[str]) -> tuple[dict[str, Scores], Scores]:
    """Per-field scores and the overall score (all fields pooled)."""
    items = list(items)
    per_field = {f: score([(i.truth, i.pred) for i in items if i.field == f]) for f in fields}
    return per_field, score([(i.truth, i.pred) for i in items])


@dataclass
class CoveragePoint:
    threshold: float  # units kept have confidence >= threshold
    coverage: float  # fraction of units kept (not sent to review)
    accuracy: float  # field exact match on the kept units
    units_right: float = 0.0  # fraction of kept units (pages, or crops) with every field right


def _units(items: list[Item]) -> list[tuple[float, list[Item]]]:
    """Pages (or single crops) with their confidence: a page is as sure as its least sure field."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.page_key or item.source, []).append(item)
    return [(min(i.confidence for i in group), group) for group in groups.values()]


def coverage_curve(items: Iterable[Item], steps: int = 50) -> list[CoveragePoint]:
    """Accuracy of what is kept as more and more low-confidence pages are set aside.

    An honest confidence gives a curve that rises as coverage falls.
    """
    units = sorted(_units(list(items)), key=lambda u: -u[0])
    total = len(units)
    if not total:
        return []
    points, correct, count, whole = [], 0, 0, 0
    marks = {max(1, round(total * k / steps)) for k in range(1, steps + 1)}
    for kept, (conf, group) in enumerate(units, start=1):
        correct += sum(i.correct for i in group)
        count += len(group)
        whole += all(i.correct for i in group)
        if kept in marks:
            points.append(CoveragePoint(conf, kept / total, correct / count, whole / kept))
    return points


def threshold_for(items: Iterable[Item], target: float = 0.98) -> CoveragePoint | None:
    """The lowest review threshold at which the kept units (pages, or crops) are `target` fully
    right, with the coverage it gives; None when no threshold reaches it.

    Units tied at one confidence are kept or set aside together, as a threshold would.
    """
    units = sorted(_units(list(items)), key=lambda u: -u[0])
    best, right, correct, count = None, 0, 0, 0
    for kept, (conf, group) in enumerate(units, start=1):
        right += all(i.correct for i in group)
        correct += sum(i.correct for i in group)
        count += len(group)
        tied = kept < len(units) and units[kept][0] == conf
        if not tied and right / kept >= target:
            best = CoveragePoint(conf, kept / len(units), correct / count, right / kept)
    return best


def review_split(items: Iterable[Item]) -> dict[str, float | int | None]:
    """Accuracy of the units the pipeline accepts versus the ones it flags `needs_review`."""
    units = _units(list(items))
    kept = [i for _, g in units if not any(x.needs_review for x in g) for i in g]
    flagged = [i for _, g in units if any(x.needs_review for x in g) for i in g]

    def acc(group: list[Item]) -> float | None:
        return sum(i.correct for i in group) / len(group) if group else None

    n_flagged = sum(1 for _, g in units if any(x.needs_review for x in g))
    return {
        "units": len(units),
        "flagged": n_flagged,
        "coverage": (len(units) - n_flagged) / len(units) if units else 0.0,
        "accuracy_kept": acc(kept),
        "accuracy_flagged": acc(flagged),
        "accuracy_all": acc(kept + flagged),
    }
