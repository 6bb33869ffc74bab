"""Real-glyph synthesis (train/experiments/real_glyphs.py): alignment, cutting, composing."""

from __future__ import annotations

import numpy as np

from train.experiments.real_glyphs import compose, cut_glyphs, viterbi_align


def _probs(frames: dict[int, int], T: int = 12, C: int = 5) -> np.ndarray:
    """Blank everywhere except class frames[t] at frame t."""
    p = np.full((T, C), 0.01, np.float32)
    p[:, 0] = 0.96
    for t, k in frames.items():
        p[t] = 0.01
        p[t, k] = 0.96
    return p


def test_viterbi_finds_where_each_character_is_emitted():
    assert viterbi_align(_probs({2: 1, 7: 2}), [1, 2]) == [2, 7]
    # a doubled letter needs a blank between its two emissions
    assert viterbi_align(_probs({3: 3, 5: 3}), [3, 3]) == [3, 5]
    assert viterbi_align(_probs({}, T=1), [1, 2]) is None  # too short to hold the label


def test_cut_keeps_one_glyph_per_separated_letter_and_drops_small_print():
    canvas = np.full((64, 120), 255, np.uint8)
    canvas[5:60, 10:20] = 0  # a tall letter
    canvas[5:60, 40:52] = 0  # another
    canvas[50:60, 80:90] = 0  # small printed text, a letter's height too short
    glyphs = cut_glyphs(canvas, "AB C", [3, 11, 21], stride=4.0)
    assert [ch for ch, _ in glyphs] == ["A", "B"]
    assert [g.shape for _, g in glyphs] == [(64, 10), (64, 12)]
    # two letters whose emissions fall in one blob (touching cursive) are not cut
    assert cut_glyphs(canvas, "AB", [3, 4], stride=4.0) == []


def test_compose_writes_known_letters_only():
    rng = np.random.default_rng(0)
    bank = {"A": [np.zeros((64, 8), np.uint8)], "B": [np.zeros((64, 9), np.uint8)]}
    assert compose("ABC", bank, rng) is None
    image = compose("AB A", bank, rng)
    assert image is not None and image.shape[0] > 64 and image.dtype == np.uint8
    assert (image == 0).sum() == 64 * (8 + 9 + 8)  # every glyph pasted, nothing else inked
