"""The soak (tests/soak_watch.py) as tests: a small one in the default run, 1,000 files with `-m slow`."""

from __future__ import annotations

import pytest

from tests.soak_watch import run_soak
from tests.watch_helpers import small_template


def _check(summary: dict) -> None:
    assert summary["exit_code"] == 0
    assert summary["duplicates"] == 0 and summary["missing"] == 0
    assert summary["rows"] == summary["pages_expected"]
    assert summary["done"] + summary["failed"] == summary["files"]


def test_soak_small(tmp_path, tiny_model):
    summary = run_soak(40, tmp_path / "run", tiny_model, small_template(tmp_path / "tpl"), timeout=120)
    _check(summary)


@pytest.mark.slow
def test_soak_1000_files(tmp_path, tiny_model, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("1,000-file soak: run with -m slow")
    summary = run_soak(1000, tmp_path / "run", tiny_model, small_template(tmp_path / "tpl"), timeout=1800)
    print(summary)
    _check(summary)
    assert summary["rss_end_mb"] < summary["rss_start_mb"] + 150  # no leak proportional to the files seen


@pytest.mark.slow
def test_soak_with_oversized_files_leaves_no_memory_behind(tmp_path, tiny_model, request):
    """A 300-page PDF and a 59-megapixel image in the middle of 100 files: once idle again, the
    daemon is no bigger than it was doing ordinary work before they came (issue 15)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("oversized soak: run with -m slow")
    summary = run_soak(100, tmp_path / "run", tiny_model, small_template(tmp_path / "tpl"), timeout=900, oversized=True)
    print(summary)
    _check(summary)
    assert summary["rss_end_mb"] < summary["rss_by_quarter_mb"]["25"] + 100
