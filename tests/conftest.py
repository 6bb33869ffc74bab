from __future__ import annotations

from pathlib import Path

import pytest

from formreader.paths import shared_root
from tests.tinymodel import build_tiny_model

SHARED = shared_root()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def handwriting_fonts() -> Path:
    """The shared handwriting fonts that `formreader.benchmark.alignment.fill` writes values with
    (without them it falls back to Pillow's font, a different page than the thresholds were set on)."""
    fonts = SHARED / "fonts"
    if not any(fonts.glob("*.ttf")):
        pytest.skip(f"handwriting fonts not found in {fonts}")
    return fonts


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared folder with the labelled Kaggle dev crops (training and fine-tuning tests)."""
    if not (SHARED / "data" / "kaggle-names" / "dev" / "labels.csv").exists():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED
