"""Reading fields with two recognizers and a field grammar: a composition of predictors.

`FieldReader(primary, second, ...)` takes two `Predictor`s (the CRNN and PP-OCRv5), asks each
for its per-column class probabilities, folds them onto one alphabet (upper case: the PP-OCR
classes `a`, `A` and fullwidth `Ａ` all count for `A`; accents stay; classes with no place in the
field alphabet, such as CJK characters, are dropped), and then, per crop:

1. candidates: the union of both models' CTC beam readings (the CRNN's greedy path alone when it
   reads without a second opinion and the decoder is greedy), the field grammar's valid
   neighbours of invalid readings, and nearby names-list entries when a lexicon is given;
2. score: the sum of the candidates' exact CTC log-likelihoods under both models (a product of
   experts, `decoding.log_likelihoods`), plus the lexicon's prior;
3. choice: the best *valid* candidate for the field kind (`grammar.is_valid`); the best of all
   (`raw`) is kept when it differs, with up to five runner-ups (`alternatives`);
4. confidence: the chosen text's share of all candidates' likelihoods times their prior (each
   prior once), i.e. its posterior given both images (on dev `val` it ranks right from wrong readings
   far better than either model's own probability: 55% of crops kept at 98% exact, against 23%);
   a lone greedy reading (CRNN alone) keeps the model's probability of its text, as the bare
   CRNN reports it.

`second_opinion` chooses when PP-OCR is asked: `off`, `always`, or `cascade` (only for crops
whose CRNN-alone reading has confidence below `cascade_below`).

Field experts (`experts`) are models whose files name the field kinds they were trained for (the
bundled date expert: the CRNN fine-tuned on dates). On a field of its kind an expert reads in the
CRNN's place, in every mode; the second opinion joins it as it joins the CRNN. (On the 1,000
reserved MNIST dates the expert with PP-OCR reads better than all three together.)

Use from Python (e.g. as a pseudo-labelling teacher)::

    from formreader.recognize.ensemble import load_reader
    reader = load_reader(settings=RecognizerSettings(second_opinion="always", threads=2))
    readings, timings = reader.predict(gray_crops, kinds=["name"] * len(gray_crops))
    readings[0].text, readings[0].confidence, readings[0].alternatives
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from formreader.errors import ModelError
from formreader.fields import normalize_value
from formreader.recognize import grammar
from formreader.recognize.decoding import (
    Lexicon,
    greedy_text,
    load_lexicon,
    log_likelihoods,
    log_probs,
    prefix_beam_search,
    stack_log_probs,
)
from formreader.recognize.predictor import (
    Predictor,
    Reading,
    RecognizerSettings,
    load_predictor,
)
from formreader.records import Timings

MODES = ("off", "cascade", "always")
SECOND_STAGE = "recognize: second opinion"  # a part of "recognize", reported on its own line
EXPERT_STAGE = "recognize: field experts"  # likewise
BUNDLED_EXPERTS = (Path(__file__).resolve().parents[1] / "assets" / "models" / "crnn_dates.onnx",)
ALTERNATIVES = 10  # readings; several may normalize to one value (fields.make_field keeps 5)
VALUE_KINDS = ("date",)  # field kinds whose confidence is their value's, not their text's (_value_belief)
PROPOSE_FROM = 3  # grammar and lexicon look around this many best candidates
# Crops whose candidates are scored in one CTC pass: enough to share its per-step cost, few enough
# to bound its memory (steps x candidates x states: about 13 MB for 32 name crops).
DECODE_GROUP = 32
# Classes below this probability at a step do not extend a beam. The beams only propose
# candidates (each is then scored exactly), and 1e-2 proposes the same winners as 1e-3 for a
# quarter less decoding (dev val names: same exact, CER and kept@98%; 1,000 MNIST dates: same exact).
BEAM_PRUNE = 1e-2


def fold(token: str) -> str:
    """The field-alphabet character a recognizer class stands for (compatibility form, upper case)."""
    return unicodedata.normalize("NFKC", token).upper()


class Folder:
    """(T, C) probabilities of one model -> (T, 1 + len(target)): blank, then the target alphabet."""

    def __init__(self, alphabet: Sequence[str], target: str):
        index = {ch: i + 1 for i, ch in enumerate(target)}
        cols, dest = [0], [0]
        for k, token in enumerate(alphabet, start=1):
            to = index.get(fold(token))
            if to is not None:
                cols.append(k)
                dest.append(to)
        self.cols = np.array(cols)
        self.matrix = np.zeros((len(cols), len(target) + 1), np.float32)
        self.matrix[np.arange(len(cols)), dest] = 1.0

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return probs[:, self.cols] @ self.matrix


def target_alphabet(alphabet: Sequence[str]) -> str:
    """The primary model's characters folded to upper case, in order, without repeats."""
    out: list[str] = []
    for token in alphabet:
        ch = fold(token)
        if len(ch) == 1 and ch not in out:
            out.append(ch)
    return "".join(out)


@dataclass
class _Scored:
    text: str
    logps: tuple[float, ...]  # per model
    prior: float = 0.0  # the field grammar's log prior (grammar.log_prior)
    name_prior: float = 0.0  # the names lexicon's log prior (name fields with a lexicon)

    @property
    def score(self) -> float:
        """What the choice ranks by. The names prior was weighed against one model's
        log-likelihood (chosen on dev train with the CRNN alone), so it counts once per model."""
        return sum(self.logps) + self.prior + len(self.logps) * self.name_prior

    @property
    def belief(self) -> float:
        """log P(images | text) + log P(text), up to a constant: each prior counts once."""
        return sum(self.logps) + self.prior + self.name_prior


class FieldReader:
    """Two predictors combined by CTC likelihood over their candidates, under field grammars."""

    def __init__(self, primary: Predictor, second: Predictor | None = None, second_opinion: str = "cascade",
                 cascade_below: float = 0.9, decoder: str = "greedy", beam_width: int = 8, lexicon: Lexicon | None = None,
                 experts: Sequence[Predictor] = ()):
        if second_opinion not in MODES:
            raise ModelError(f"unknown second opinion {second_opinion!r} (choose {', '.join(MODES)})")
        if second_opinion != "off" and second is None:
            raise ModelError(f"second opinion {second_opinion!r} needs a second recognizer")
        self.primary, self.second = primary, second
        self.mode, self.cascade_below = second_opinion, cascade_below
        self.decoder, self.beam_width, self.lexicon = decoder, beam_width, lexicon
        self.alphabet = target_alphabet(primary.post_processor.alphabet)
        self.folders = [Folder(primary.post_processor.alphabet, self.alphabet)]
        if second is not None:
            self.folders.append(Folder(second.post_processor.alphabet, self.alphabet))
        for expert in experts:
            if not expert.kinds:
                raise ModelError("a field expert must name the field kinds it reads (its file's metadata names none)")
        self.experts = [(e, Folder(e.post_processor.alphabet, self.alphabet)) for e in experts]
        self._index = {ch: i + 1 for i, ch in enumerate(self.alphabet)}

    @property
    def batch_size(self) -> int:
        return self.primary.batch_size

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers its models' sessions use (a model without one adds none)."""
        models = [self.primary, *([self.second] if self.second else []), *(e for e, _ in self.experts)]
        names = [name for m in models for name in getattr(m.model, "providers", [])]
        return list(dict.fromkeys(names))

    def __call__(self, crops: list[np.ndarray]) -> list[Reading]:
        return self.predict(crops)[0]

    def predict(self, crops: list[np.ndarray], kinds: Sequence[str | grammar.Grammar] | None = None) -> tuple[list[Reading], Timings]:
        """One Reading per crop, in order; `kinds` (field kinds or `grammar.Grammar`s, default all
        "text") picks each field's grammar."""
        kinds = [grammar.of(k) for k in kinds] if kinds is not None else [grammar.Grammar()] * len(crops)
        timings = Timings()
        experts = self._first_opinions(crops, kinds, timings)
        t0 = time.perf_counter()
        if self.mode == "off":
            asked: list[int] = []
        elif self.mode == "always":
            asked = list(range(len(crops)))
        else:
            first = self._decode_all(experts, kinds)
            asked = [i for i, r in enumerate(first) if r.confidence < self.cascade_below]
        timings.add("decode", time.perf_counter() - t0)
        if asked:
            second, seconds = self.second.probabilities([crops[i] for i in asked], transform=self.folders[1])
            timings.add("recognize", seconds)
            timings.add(SECOND_STAGE, seconds)  # the share of `recognize` the second opinion took
            for i, p in zip(asked, second):
                experts[i].append(p)
        t0 = time.perf_counter()
        if self.mode == "cascade":
            readings = list(first)
            for i, r in zip(asked, self._decode_all([experts[i] for i in asked], [kinds[i] for i in asked])):
                readings[i] = r
        else:
            readings = self._decode_all(experts, kinds)
        timings.add("decode", time.perf_counter() - t0)
        return readings, timings

    def _first_opinions(self, crops: list[np.ndarray], kinds: list[grammar.Grammar], timings: Timings) -> list[list[np.ndarray]]:
        """Each crop's first reader's folded probabilities: the field expert for its kind, if any,
        else the primary model."""
        experts: list[list[np.ndarray]] = [[] for _ in crops]
        todo = set(range(len(crops)))
        for expert, folder in self.experts:
            mine = [i for i in sorted(todo) if kinds[i].kind in expert.kinds]
            if mine:
                probs, seconds = expert.probabilities([crops[i] for i in mine], transform=folder)
                timings.add("recognize", seconds)
                timings.add(EXPERT_STAGE, seconds)
                for i, p in zip(mine, probs):
                    experts[i].append(p)
                todo -= set(mine)
        general = sorted(todo)
        if general:
            probs, seconds = self.primary.probabilities([crops[i] for i in general], transform=self.folders[0])
            timings.add("recognize", seconds)
            for i, p in zip(general, probs):
                experts[i].append(p)
        return experts

    # --- decoding: per crop, with the candidates of all crops scored together ----------------

    def decode(self, probabilities: list[list[np.ndarray]], kinds: Sequence[str | grammar.Grammar]) -> list[Reading]:
        """Readings from probabilities already computed: per crop, its models' outputs folded onto
        `alphabet` (`folders[k](probs)`), in the order primary (or expert), second. A teacher that
        also needs each model's own reading calls the models once and decodes here."""
        return self._decode_all(probabilities, [grammar.of(k) for k in kinds])

    def _decode_all(self, experts: list[list[np.ndarray]], fields: Sequence[grammar.Grammar]) -> list[Reading]:
        """Each crop's reading from its models' folded probabilities, under its field's grammar."""
        return [r for at in range(0, len(experts), DECODE_GROUP)
                for r in self._decode_group(experts[at : at + DECODE_GROUP], fields[at : at + DECODE_GROUP])]

    def _decode_group(self, experts: list[list[np.ndarray]], fields: Sequence[grammar.Grammar]) -> list[Reading]:
        logps = [[log_probs(p) for p in e] for e in experts]
        scored = self._score_all(logps, [self._proposed(e, f.kind) for e, f in zip(experts, fields)])
        for candidates in scored:
            candidates.sort(key=lambda s: -s.score)
        near = self._lexicon_neighbours(scored, fields)
        extras = [self._neighbours(candidates, field, near) for candidates, field in zip(scored, fields)]
        for candidates, more, field in zip(scored, self._score_all(logps, extras), fields):
            candidates += more
            for s in candidates:
                s.prior = grammar.log_prior(field.kind, s.text)
                if self.lexicon is not None and field.kind == "name":
                    s.name_prior = self.lexicon.prior(s.text)
        return [self._choose(candidates, field, posterior=len(e) > 1 or self.decoder != "greedy"
                             or field.kind in ("date", "digits") or bool(field.choices))
                for candidates, field, e in zip(scored, fields, experts)]

    def _lexicon_neighbours(self, scored: list[list[_Scored]], fields: Sequence[grammar.Grammar]) -> dict[str, list[str]]:
        """Names-list entries near the best candidates of every name field of a group, looked up
        together (`Lexicon.neighbours_many`)."""
        if self.lexicon is None:
            return {}
        texts = list(dict.fromkeys(s.text for ranked, field in zip(scored, fields) if field.kind == "name"
                                   for s in ranked[:PROPOSE_FROM] if s.text and not any(c.isdigit() for c in s.text)))
        return dict(zip(texts, self.lexicon.neighbours_many(texts)))

    def _neighbours(self, ranked: list[_Scored], field: grammar.Grammar, near: dict[str, list[str]]) -> list[str]:
        """Texts near the best candidates that are not candidates yet: the grammar's valid
        neighbours of invalid readings, and nearby names-list entries (`near`)."""
        extra: set[str] = set()
        for s in ranked[:PROPOSE_FROM]:
            extra |= field.proposals(s.text)
            if field.kind == "name":
                extra.update(near.get(s.text, ()))
        extra -= {s.text for s in ranked}
        return [t for t in extra if self._ids(t) is not None]

    def _proposed(self, experts: list[np.ndarray], kind: str) -> list[str]:
        # Dates and codes always get a beam: the grammar needs runner-ups to choose from
        # (reserved MNIST dates, CRNN alone: 93.2% exact from the greedy path, 94.4% from a beam).
        if len(experts) == 1 and self.decoder == "greedy" and kind not in ("date", "digits"):
            return [greedy_text(experts[0], self.alphabet)]
        texts: dict[str, None] = {}
        for probs in experts:
            for ids, _ in prefix_beam_search(probs, beam_width=self.beam_width, prune=BEAM_PRUNE):
                texts["".join(self.alphabet[k - 1] for k in ids)] = None
        return list(texts)

    def _ids(self, text: str) -> list[int] | None:
        try:
            return [self._index[ch] for ch in text]
        except KeyError:
            return None

    def _score_all(self, logps: list[list[np.ndarray]], texts: list[list[str]]) -> list[list[_Scored]]:
        """Each crop's texts with their exact CTC log-likelihood under each of its models: one
        forward pass per model position for all crops (`decoding.log_likelihoods`)."""
        labels = [[self._ids(t) for t in ts] for ts in texts]
        per_model: list[list[list[float]]] = [[[] for _ in ts] for ts in texts]
        for j in range(max((len(lp) for lp in logps), default=0)):
            crops = [i for i, lp in enumerate(logps) if len(lp) > j and texts[i]]
            if not crops:
                continue
            owners = np.concatenate([np.full(len(texts[i]), k) for k, i in enumerate(crops)])
            values = log_likelihoods(stack_log_probs([logps[i][j] for i in crops]), owners, [ids for i in crops for ids in labels[i]])
            at = 0
            for i in crops:
                for m in range(len(texts[i])):
                    per_model[i][m].append(float(values[at + m]))
                at += len(texts[i])
        return [[_Scored(t, tuple(v)) for t, v in zip(ts, vs)] for ts, vs in zip(texts, per_model)]

    def _choose(self, scored: list[_Scored], field: grammar.Grammar, posterior: bool) -> Reading:
        """The best valid candidate; confidence is its posterior among the candidates
        (`posterior`), or, for a lone greedy reading, the model's probability of it."""
        if not scored:
            return Reading("", 0.0)
        ranked = sorted(scored, key=lambda s: -s.score)
        valid = [s for s in ranked if field.is_valid(s.text)]
        chosen = valid[0] if valid else ranked[0]
        raw = max(scored, key=lambda s: sum(s.logps))  # the models' own reading, no grammar, no prior
        others = [s.text for s in (valid or ranked) if s.text != chosen.text][:ALTERNATIVES]
        if posterior:
            # The posterior P(text | images), each prior counted once: a known name is likelier
            # right than an unknown string read as surely. Share of crops kept at 98% right,
            # without the names prior / with it: dev train 75% / 78%; dev val 55% / 57% as
            # labelled, 75% / 77% with its known label errors fixed (benchmark/errata.py).
            # A closed list is scored whole (every choice against the image) and its field holds
            # nothing else, so the posterior is over the choices: a free reading outside the list
            # (`SEME` for 5EME, `CEZ` for CE2) is a letter/digit confusion, not a rival value.
            pool = valid if field.choices and valid else ranked
            total = np.logaddexp.reduce(np.array([s.belief for s in pool]))
            confidence = math.exp(self._value_belief(chosen, pool, field.kind) - total)
        else:
            confidence = math.exp(sum(chosen.logps))
        return Reading(chosen.text, float(min(max(confidence, 0.0), 1.0)), raw.text, tuple(others))

    @staticmethod
    def _value_belief(chosen: _Scored, pool: list[_Scored], kind: str) -> float:
        """log P(the chosen value), up to the same constant as the beliefs. A date is one value
        written many ways (`18 11 2010`, `1811 2010`, `18/11/2010`: on a boxed form with printed
        separators the spacing varies), so its share sums every reading of that value; on 100
        such hard pages that took the dates kept at 98% right from 27% to 79%. A name keeps its
        own text's share: summing names that normalize alike ranked dev val worse (kept at 98%
        with the label errors fixed 77.3% -> 75.0%)."""
        if kind not in VALUE_KINDS:
            return chosen.belief
        value = normalize_value(kind, chosen.text)[0]
        return float(np.logaddexp.reduce(np.array(
            [s.belief for s in pool if s.text == chosen.text or normalize_value(kind, s.text)[0] == value])))


def load_reader(model_path: Path | None = None, settings: RecognizerSettings = RecognizerSettings()) -> FieldReader:
    """The CRNN (bundled or `model_path`) plus, unless `settings.second_opinion` is off, PP-OCRv5."""
    if settings.second_opinion not in MODES:
        raise ModelError(f"unknown second opinion {settings.second_opinion!r} (choose {', '.join(MODES)})")
    primary = load_predictor(model_path, replace(settings, lexicon=None))  # only its probabilities are used
    if primary.kinds:
        raise ModelError(f"{model_path}: an expert for {', '.join(primary.kinds)} fields, not a general model "
                         "(give it as a field expert: --experts)")
    experts = []
    for path in expert_paths(settings.experts):
        experts.append(load_predictor(path, replace(settings, decoder="greedy", lexicon=None)))
        if not experts[-1].kinds:
            raise ModelError(f"{path}: a general model, not a field expert (its metadata names no field kinds)")
    second = None
    if settings.second_opinion != "off":
        from formreader.recognize.ppocr import load_ppocr

        second = load_ppocr(settings)
    lexicon = load_lexicon(settings.lexicon)
    decoder = "beam" if lexicon is not None else settings.decoder
    return FieldReader(primary, second, settings.second_opinion, settings.cascade_below, decoder,
                       settings.beam_width, lexicon, experts)


def expert_paths(experts: str) -> list[Path]:
    """The `experts` setting as model files: "bundled", "none", or files separated by commas."""
    value = experts.strip()
    if value == "bundled":
        return list(BUNDLED_EXPERTS)
    if value in ("none", ""):
        return []
    return [Path(p.strip()) for p in value.split(",") if p.strip()]
