from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tinymodel import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FORMREADER_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED
