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
