from __future__ import annotations

from pathlib import Path

import pytest

from formreader.config import Config, load_config
from formreader.errors import ConfigError


def test_defaults_then_file_then_command_line(tmp_path: Path):
    cfg_file = tmp_path / "conf" / "formreader.toml"
    cfg_file.parent.mkdir()
    cfg_file.write_text('[formreader]\nbatch_size = 16\nthreads = 1\nmodel = "models/m.onnx"\n')
    assert load_config() == Config()
    from_file = load_config(cfg_file)
    assert (from_file.batch_size, from_file.threads) == (16, 1)
    assert from_file.model == (tmp_path / "conf" / "models" / "m.onnx").resolve()  # relative to the file
    both = load_config(cfg_file, {"batch_size": 8, "threads": None})
    assert (both.batch_size, both.threads) == (8, 1)


def test_unknown_or_bad_settings_are_refused(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("batchsize = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(bad)
    bad.write_text('batch_size = "many"\n')
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(bad)
