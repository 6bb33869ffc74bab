"""The shared font renderer gives the pixels the two old renderers gave, seed for seed.

Training crops (`train/synth.py`) and synthetic forms (`FontNames`) each had their own font
loader and name rendering until commit 33d41cb; both now use `formreader.synth.fonts`. The
shipped model's training mix stays reproducible only if every sample is unchanged: this test
runs the code of 33d41cb (read from git history) beside today's on the same seeds and compares
the images, the labels and the random generator's state afterwards. Skips without git history
or the shared fonts.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from formreader.synth.fonts import FontNames, font_paths
from train.synth import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "33d41cb"  # the last commit with two renderers
SEEDS = int(os.environ.get("FORMREADER_PROOF_SEEDS", "120"))  # seeds per sample kind; raise it for the full proof
NAMES = ["DUPONT", "MARTIN", "LE GALL", "BENOIT-DUPRE", "N'DIAYE", "ÉLODIE", "Zoé", "JEAN PIERRE"]


def _old_module(path: str, name: str, tmp_path: Path):
    if shutil.which("git") is None:
        pytest.skip("git not available")
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:{path}"], capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        pytest.skip(f"commit {BEFORE} not in this clone's history")
    file = tmp_path / f"{name}.py"
    file.write_text(shown.stdout, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while decorating
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture(scope="module")
def fonts(shared_dir) -> list[Path]:
    return font_paths(shared_dir / "fonts")


@pytest.fixture(scope="module")
def digits(shared_dir) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_dir / "data" / "digits" / "mnist_train.npz") as data:
        return data["x"][:2000], data["y"][:2000]


def _same(old_sample, new_sample, old_rng, new_rng, what: str) -> None:
    (old_img, old_text), (new_img, new_text) = old_sample, new_sample
    assert old_text == new_text, what
    assert old_img.shape == new_img.shape and np.array_equal(old_img, new_img), what
    assert old_rng.bit_generator.state == new_rng.bit_generator.state, what


def test_training_crops_are_unchanged(fonts, digits, tmp_path):
    old_module = _old_module("train/synth.py", "old_train_synth", tmp_path)
    # One change since, on purpose: dates are drawn from every calendar day, not days 1-28 only
    # (the shipped CRNN was trained on the old draw; the date expert on the new one). With the old
    # code given today's draw, every crop must still come out the same.
    old_module.Synthesizer.random_date = staticmethod(Synthesizer.random_date)
    old = old_module.Synthesizer(fonts, NAMES, *digits)
    new = Synthesizer(fonts, NAMES, *digits)
    for seed in range(SEEDS):
        for kind in ("name_crop", "blank_name_crop", "font_date_crop", "mnist_date_crop"):
            method = kind.removeprefix("blank_")
            kwargs = {"blank": True} if kind.startswith("blank") else {}
            old_rng, new_rng = np.random.default_rng(seed), np.random.default_rng(seed)
            _same(getattr(old, method)(old_rng, **kwargs), getattr(new, method)(new_rng, **kwargs),
                  old_rng, new_rng, f"{kind}, seed {seed}")


def test_form_handwriting_is_unchanged(fonts, tmp_path):
    old = _old_module("formreader/synth/handwriting.py", "old_handwriting", tmp_path).FontNames(fonts)
    new = FontNames(fonts)
    for seed in range(SEEDS // 4):  # slower to draw: 64 px letters, glyph checks
        for field in ("NOM", "PRENOM"):
            old_rng, new_rng = np.random.default_rng(seed), np.random.default_rng(seed)
            a, b = old.sample(old_rng, field), new.sample(new_rng, field)
            _same((a.image, a.text), (b.image, b.text), old_rng, new_rng, f"{field}, seed {seed}")
