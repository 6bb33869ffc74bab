"""CTC decoding of recognizer output: (T, C) probabilities -> (text, confidence).

- `greedy_decode`: best path.
- `beam_decode`: CTC prefix beam search; with a `Lexicon`, known names nearby in spelling are
  re-scored with their exact CTC likelihood plus a frequency prior, so a known name wins when
  the image supports it about as well as the free reading, and an unknown surname that the
  model reads confidently is kept rather than forced onto the nearest lexicon entry.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NEG_INF = -1e30
# The bundled names prior: INSEE's French first names and 20,000 most frequent surnames
# (`python -m train names-lexicon`; formreader/assets/lexicons/NOTICE).
BUNDLED_LEXICON = Path(__file__).resolve().parents[1] / "assets" / "lexicons" / "names_fr.csv.gz"


def greedy_decode(probs: np.ndarray, alphabet: str, blank: int = 0) -> tuple[str, float]:
    """Best path for one crop: see `greedy_decode_batch`."""
    return greedy_decode_batch(probs[None], alphabet, blank)[0]


def greedy_decode_batch(probs: np.ndarray, alphabet: str, blank: int = 0) -> list[tuple[str, float]]:
    """Best path: argmax per step, collapse repeats, drop blanks; (N, T, C) -> N readings.

    Confidence is the model's probability of the text, summed over all its alignments (the
    same measure as `beam_decode`). The best path's own probability would rank readings as well
    but sits far below 1 even for sure ones, so a review threshold on it would mean nothing.
    """
    best = probs.argmax(axis=-1)
    labels = [_collapse(row, blank) for row in best]
    logp = batch_log_likelihood(probs, labels, blank)
    return [("".join(alphabet[k - 1] for k in ids), float(np.exp(lp))) for ids, lp in zip(labels, logp)]


def greedy_text(probs: np.ndarray, alphabet: str, blank: int = 0) -> str:
    """Best-path text of one (T, C) crop without its confidence, for callers that only compare
    or propose texts (a confidence costs a CTC forward pass)."""
    return "".join(alphabet[k - 1] for k in _collapse(probs.argmax(axis=1), blank))


def _collapse(path: np.ndarray, blank: int) -> list[int]:
    keep = np.ones(len(path), bool)
    keep[1:] = path[1:] != path[:-1]
    return [int(k) for k in path[keep] if k != blank]


def batch_log_likelihood(probs: np.ndarray, labels: list[list[int]], blank: int = 0) -> np.ndarray:
    """log P(labels[n] | probs[n]) for a batch of (N, T, C) probabilities: see `log_likelihoods`."""
    return log_likelihoods(log_probs(probs), np.arange(len(labels)), labels, blank)


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, 1e-30, 1.0))


def stack_log_probs(logps: list[np.ndarray], blank: int = 0) -> np.ndarray:
    """(T, C) log-probabilities of several crops as one (K, T, C) array for `log_likelihoods`.
    Crops with fewer steps get trailing steps that surely emit the blank, which leaves every
    labelling's likelihood exactly as it was."""
    steps = max(lp.shape[0] for lp in logps)
    if all(lp.shape[0] == steps for lp in logps):
        return np.stack(logps)
    pad = np.full((steps, logps[0].shape[1]), NEG_INF, logps[0].dtype)
    pad[:, blank] = 0.0
    return np.stack([np.concatenate([lp, pad[: steps - lp.shape[0]]]) for lp in logps])


# A labelling scored below this (log) is scored again in the log domain: the scaled pass may
# have lost paths worth up to e^-700 each (see `_scaled_forward`), which only such a score feels.
SCALED_FLOOR = -600.0


def log_likelihoods(logp: np.ndarray, owners: np.ndarray, labels: list[list[int]], blank: int = 0) -> np.ndarray:
    """log P(labels[n] | crop owners[n]) by the CTC forward algorithm, run on all labellings at once.

    `logp` is (K, T, C) log-probabilities of K crops; many labellings usually share a crop (every
    candidate reading of a field), so each crop's logarithm is taken once. Vectorized over the
    labellings: the forward pass costs numpy overhead per step, not per labelling, so a page's
    (or a batch's) candidates are scored together. The pass runs on probabilities rescaled at
    every step (multiplications, 3x faster than log-domain additions on dev val's candidates,
    the same values within 1e-13); the rare labelling it scores below `SCALED_FLOOR` is scored
    again in the log domain.
    """
    n = len(labels)
    if n == 0:
        return np.zeros(0)
    owners = np.asarray(owners)
    ext = _extended(labels, blank)
    # (T, N, W): step t's emissions of every labelling's states, one contiguous block
    emit = logp[owners[None, :, None], np.arange(logp.shape[1])[:, None, None], ext[None, :, :]]
    # Skipping a blank is allowed only between two different symbols.
    skip = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    ends = np.array([2 * len(ids) for ids in labels])
    values = _scaled_forward(np.exp(emit.astype(np.float64)), skip, ends)
    low = np.flatnonzero(~(values > SCALED_FLOOR))
    if len(low):
        values[low] = _log_forward(emit[:, low], skip[low], ends[low])
    return values


def _extended(labels: list[list[int]], blank: int) -> np.ndarray:
    """Each labelling with a blank before, between and after its symbols, padded with blanks."""
    ext = np.full((len(labels), 2 * max(len(ids) for ids in labels) + 1), blank, np.int64)
    for i, ids in enumerate(labels):
        ext[i, 1 : 2 * len(ids) : 2] = ids
    return ext


def _scaled_forward(emit: np.ndarray, skip: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The forward pass on probabilities, each labelling's states scaled at every step by the
    power of two that brings their largest into [0.5, 1), the exponents counted apart. Powers of
    two scale exactly, so a labelling scores bit for bit the same whatever it is batched with (a
    shorter crop's padded steps, which surely emit the blank, only rescale). A state below
    e^-709 of its row's largest underflows to 0; as a path's probability never grows, what is
    lost is worth at most e^-700 in all, which moves no score above `SCALED_FLOOR`."""
    n, width = emit.shape[1], emit.shape[2]
    skip = skip.astype(np.float64)
    alpha = np.zeros((n, width))
    alpha[:, :2] = emit[0, :, :2]
    exponent = np.zeros(n, np.int64)
    nxt, jump = np.empty_like(alpha), np.empty_like(skip)
    for t in range(1, emit.shape[0]):
        np.copyto(nxt, alpha)
        nxt[:, 1:] += alpha[:, :-1]
        np.multiply(alpha[:, :-2], skip, out=jump)
        nxt[:, 2:] += jump
        nxt *= emit[t]
        shift = np.frexp(nxt.max(axis=1))[1]  # 0 for a row of zeros
        np.ldexp(nxt, -shift[:, None], out=nxt)
        exponent += shift
        alpha, nxt = nxt, alpha
    rows = np.arange(n)
    total = alpha[rows, ends] + np.where(ends > 0, alpha[rows, np.maximum(ends - 1, 0)], 0.0)
    mantissa, more = np.frexp(total)
    with np.errstate(divide="ignore"):
        return np.where(total > 0, np.log(mantissa) + (exponent + more) * math.log(2.0), NEG_INF)


def _log_forward(emit: np.ndarray, skip: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The same forward pass on log-probabilities: exact for any score, 3x slower."""
    n, width = emit.shape[1], emit.shape[2]
    skip = np.where(skip, 0.0, NEG_INF)
    alpha = np.full((n, width), NEG_INF)
    alpha[:, :2] = emit[0, :, :2]
    nxt, jump = np.empty_like(alpha), np.empty_like(skip)
    for t in range(1, emit.shape[0]):
        nxt[:, 0] = alpha[:, 0]
        np.logaddexp(alpha[:, 1:], alpha[:, :-1], out=nxt[:, 1:])
        np.add(alpha[:, :-2], skip, out=jump)
        np.logaddexp(nxt[:, 2:], jump, out=nxt[:, 2:])
        nxt += emit[t]
        alpha, nxt = nxt, alpha
    rows = np.arange(n)
    last = alpha[rows, ends]
    before = np.where(ends > 0, alpha[rows, np.maximum(ends - 1, 0)], NEG_INF)
    return np.logaddexp(last, before)


def _logsumexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b <= NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def prefix_beam_search(
    probs: np.ndarray, beam_width: int = 10, blank: int = 0, prune: float = 1e-3
) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search; returns [(class ids, log P(labelling))] best first."""
    logp = log_probs(probs)
    above = probs >= prune
    # Steps where only the blank survives pruning (most steps) just add its log-probability to
    # every beam and end each in a blank: a run of them is one addition, not a loop over beams.
    blank_only = above[:, blank] & (above.sum(axis=1) == 1)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (blank, non-blank)
    t, steps = 0, logp.shape[0]
    rows = logp.tolist()
    while t < steps:
        if blank_only[t]:
            end = t
            while end < steps and blank_only[end]:
                end += 1
            shift = float(logp[t:end, blank].sum())
            beams = {k: (_logsumexp(pb, pnb) + shift, NEG_INF) for k, (pb, pnb) in beams.items()}
            t = end
            continue
        beams = _extend(beams, rows[t], np.flatnonzero(above[t]).tolist(), beam_width, blank)
        t += 1
    result = [(k, _logsumexp(*v)) for k, v in beams.items()]
    return sorted(result, key=lambda kv: -kv[1])


def _extend(beams: dict[tuple[int, ...], tuple[float, float]], row: list[float], candidates: list[int],
            beam_width: int, blank: int) -> dict[tuple[int, ...], tuple[float, float]]:
    """One step of the prefix beam search over the classes that survived pruning (plain Python
    floats and ints: this loop runs for every beam, step and class, where numpy scalars cost)."""
    nxt: dict[tuple[int, ...], list[float]] = {}
    for prefix, (pb, pnb) in beams.items():
        total = _logsumexp(pb, pnb)
        last = prefix[-1] if prefix else None
        for c in candidates:
            p = row[c]
            if c == blank:
                entry = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
                entry[0] = _logsumexp(entry[0], total + p)
                continue
            entry = nxt.setdefault(prefix + (c,), [NEG_INF, NEG_INF])
            # A repeated char needs a blank in between to start a new symbol.
            entry[1] = _logsumexp(entry[1], (pb if c == last else total) + p)
            if c == last:
                same = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
                same[1] = _logsumexp(same[1], pnb + p)
    ranked = heapq.nlargest(beam_width, nxt.items(), key=lambda kv: _logsumexp(*kv[1]))
    return {k: (v[0], v[1]) for k, v in ranked}


def ctc_log_likelihood(probs: np.ndarray, labels: list[int], blank: int = 0) -> float:
    """Exact log P(labels | probs) by the CTC forward algorithm, for one crop's (T, C) probabilities."""
    return float(log_likelihoods(log_probs(probs)[None], np.zeros(1, np.int64), [labels], blank)[0])


@dataclass
class Lexicon:
    """Known names (upper case) with their frequencies, used as a prior on name fields.

    A reading's score is log P(text | image) + weight * log(count(text)), with log P computed
    exactly for every candidate: frequent names get a larger prior, names seen once (name lists
    hold misspellings too) and unknown names get none, so an unknown surname survives whenever
    the image supports it better than its lexicon neighbours.
    """

    counts: dict[str, int]
    weight: float = 0.75  # chosen on the dev train split (python -m train evaluate --parts tune)
    max_edits: int = 2
    neighbours_per_beam: int = 5
    _choices: list[str] = field(default_factory=list, repr=False)
    _windows: dict[tuple[int, int], list[str]] = field(default_factory=dict, repr=False)  # search cache

    def __post_init__(self) -> None:
        self._choices = sorted(self.counts)

    @classmethod
    def from_names(cls, names, **kwargs) -> "Lexicon":
        return cls.from_counted(((name, 1) for name in names), **kwargs)

    @classmethod
    def from_counted(cls, pairs, **kwargs) -> "Lexicon":
        """(name, count) pairs; a name listed twice adds up; EMPTY/UNREADABLE labels are skipped."""
        counts: dict[str, int] = defaultdict(int)
        for name, count in pairs:
            key = " ".join(str(name).upper().split())
            if key and key not in ("EMPTY", "UNREADABLE"):
                counts[key] += max(count, 1)
        return cls(counts=dict(counts), **kwargs)

    @classmethod
    def from_csv(cls, path: str | Path, column: str = "NAME", **kwargs) -> "Lexicon":
        """A CSV with a NAME column: each row counts once, or COUNT times when it has a COUNT column."""
        import csv

        with _open_text(path) as fh:
            rows = csv.reader(fh)
            header = [h.strip() for h in next(rows, [])]
            if column not in header:
                raise ValueError(f"{path}: no {column} column")
            at = header.index(column)
            weight_at = header.index("COUNT") if "COUNT" in header else None
            return cls.from_counted(
                ((row[at], _count(row[weight_at]) if weight_at is not None and len(row) > weight_at else 1)
                 for row in rows if len(row) > at), **kwargs)

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "Lexicon":
        """A CSV with a NAME column (names.csv; optionally COUNT), or a plain list with one name a
        line; gzip-compressed when the name ends in .gz."""
        with _open_text(path) as fh:
            header = fh.readline().strip().lstrip("\ufeff")
            if header.split(",")[0].strip().upper() != "NAME":
                return cls.from_names([header, *fh.read().splitlines()], **kwargs)
        return cls.from_csv(path, **kwargs)

    @property
    def words(self) -> frozenset[str]:
        return frozenset(self.counts)

    def __contains__(self, text: str) -> bool:
        return text in self.counts

    def prior(self, text: str) -> float:
        # log(count): a name seen once (often a misspelt label) weighs no more than an unknown one.
        return self.weight * math.log(max(self.counts.get(text, 0), 1))

    def neighbours(self, text: str) -> list[str]:
        """Lexicon names within max_edits (scaled down for short words) of `text`."""
        return self.neighbours_many([text])[0]

    def neighbours_many(self, texts: Sequence[str]) -> list[list[str]]:
        """`neighbours` of each text: the nearest `neighbours_per_beam` names by edit distance,
        ties in the lexicon's (alphabetical) order. Texts that share a window of name lengths
        are compared in one rapidfuzz `cdist`, which matches several texts against each name at
        once: for a decode group's candidates, 5x faster than one `process.extract` per text."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        found: list[list[str]] = [[] for _ in texts]
        windows: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, text in enumerate(texts):
            windows[(len(text), min(self.max_edits, max(1, len(text) // 3)))].append(i)
        for (length, limit), at in windows.items():
            names = self._window(length, limit)
            if not names:
                continue
            # Distances above the cutoff come back as cutoff + 1.
            dist = process.cdist([texts[i] for i in at], names, scorer=Levenshtein.distance,
                                 score_cutoff=limit, dtype=np.int32, workers=1)
            for i, row in zip(at, dist):
                near = np.flatnonzero(row <= limit)
                nearest = near[np.lexsort((near, row[near]))][: self.neighbours_per_beam]
                found[i] = [names[j] for j in nearest]
        return found

    def _window(self, length: int, limit: int) -> list[str]:
        """Names whose length is within `limit` of `length` (others cannot be close enough)."""
        key = (length, limit)
        if key not in self._windows:
            self._windows[key] = [w for w in self._choices if abs(len(w) - length) <= limit]
        return self._windows[key]


def lexicon_file(value: str | Path | None) -> Path | None:
    """The `lexicon` setting as a file: "bundled" (the INSEE names), "none" (no prior), or a path."""
    if value is None or str(value).strip().lower() in ("none", ""):
        return None
    path = BUNDLED_LEXICON if str(value).strip().lower() == "bundled" else Path(value)
    if not path.is_file():
        from formreader.errors import ModelError

        raise ModelError(f"{path}: lexicon file not found")
    return path


def load_lexicon(value: str | Path | None) -> Lexicon | None:
    file = lexicon_file(value)
    return Lexicon.load(file) if file is not None else None


def _open_text(path: str | Path):
    """A text file for reading, gunzipped when its name ends in .gz."""
    import gzip

    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8-sig", newline="") if path.suffix == ".gz" else path.open(encoding="utf-8-sig", newline="")


def _count(text: str | None) -> int:
    try:
        return int(float(text or 1))
    except ValueError:
        return 1


def _ids(text: str, alphabet: str) -> list[int] | None:
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    try:
        return [index[ch] for ch in text]
    except KeyError:
        return None


def _apply_lexicon(probs, beams: list[tuple[str, float]], alphabet: str, lexicon: Lexicon, blank: int) -> tuple[str, float]:
    """Best of (beam readings, nearby lexicon names) under log P(text) + lexicon prior."""
    # Exact likelihoods for every candidate: beam scores are pruned sums and would be unfairly
    # low next to the exact score of a lexicon neighbour.
    scored = {}
    for text, logp in beams:
        ids = _ids(text, alphabet)
        scored[text] = ctc_log_likelihood(probs, ids, blank) if ids is not None else logp
    for text, _ in beams[:3]:
        for name in lexicon.neighbours(text):
            if name not in scored and (ids := _ids(name, alphabet)) is not None:
                scored[name] = ctc_log_likelihood(probs, ids, blank)
    text, logp = max(scored.items(), key=lambda item: item[1] + lexicon.prior(item[0]))
    return text, float(math.exp(logp))


def beam_decode(
    probs: np.ndarray, alphabet: str, beam_width: int = 10, lexicon: Lexicon | None = None, blank: int = 0
) -> tuple[str, float]:
    """CTC prefix beam search, optionally with a names-lexicon prior.

    Confidence is the model probability of the returned text (summed over its alignments).
    The lexicon is only consulted for upper-case letter readings (names), never for dates.
    """
    found = prefix_beam_search(probs, beam_width=beam_width, blank=blank)
    beams = [("".join(alphabet[c - 1] for c in ids), logp) for ids, logp in found]
    if not beams:
        return "", 0.0
    best = beams[0][0]
    if lexicon is None or not best or any(ch.isdigit() for ch in best):
        return best, float(math.exp(beams[0][1]))
    beams = [(text.upper(), logp) for text, logp in beams]
    return _apply_lexicon(probs, beams, alphabet, lexicon, blank)
