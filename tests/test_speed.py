"""`formreader benchmark --speed`: the report's structure on a tiny generated set (no timing asserts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from formreader.benchmark.speed import _parse_pgm_stream, decode_pages
from formreader.cli import app
from formreader.ingest import discover, read_pages

runner = CliRunner()


def test_pgm_stream_parser_splits_pages():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b = np.full((2, 5), 200, np.uint8)
    data = b"P5\n4 3\n255\n" + a.tobytes() + b"P5\n5 2\n255\n" + b.tobytes()
    pages = _parse_pgm_stream(data)
    assert [p.shape for p in pages] == [(3, 4), (2, 5)]
    assert np.array_equal(pages[0], a) and np.array_equal(pages[1], b)


def test_speed_benchmark_generates_a_mixed_set_and_reports(tmp_path: Path, shared_dir: Path):  # --generate fills forms from shared data
    folder, report_path = tmp_path / "set", tmp_path / "speed.json"
    result = runner.invoke(app, ["benchmark", "--speed", str(folder), "--generate", "8", "--workers", "2",
                                 "--tesseract-pages", "2", "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    files = discover([folder])
    assert {p.suffix for p in files} == {".pdf", ".jpg", ".png", ".tif"}
    # decode-only sees exactly the pages the pipeline reads, at the same size
    for f in files:
        ours = read_pages(f)
        plain = decode_pages(str(f))
        assert [p.image.shape for p in ours] == [p.shape for p in plain], f.name

    report = json.loads(report_path.read_text())
    pages = report["pages"]
    assert pages == 8 and report["files"] == len(files) and report["workers"] == 2
    for part in ("decode_only", "scan", "scan_with_startup"):
        assert report[part]["pages"] == pages
        assert report[part]["pages_per_s"] > 0 and report[part]["seconds"] > 0
    assert report["decode_only"]["pages_per_s_before_scan"] > 0 and report["decode_only"]["pages_per_s_after_scan"] > 0
    assert report["decode_only"]["cpu_ms_per_page"] > 0 and report["scan"]["cpu_ms_per_page"] > 0
    assert report["scan"]["peak_rss_mb"] > 0 and report["scan"]["failed_pages"] == 0
    assert report["ratio"] == pytest.approx(report["scan"]["pages_per_s"] / report["decode_only"]["pages_per_s"], rel=0.01)
    assert set(report["stage_ms_per_page"]) >= {"ingest", "align", "segment", "recognize", "decode"}
    assert all(v > 0 for k, v in report["stage_ms_per_page"].items() if k != "decode")
    cpu = report["stage_cpu_ms_per_page"]
    assert cpu["pages"] == pages and cpu["crops"] > 0
    # CPU clocks tick coarsely: on 8 pages only the big stages are sure to show
    assert cpu["ingest"] > 0 and cpu["align"] > 0 and all(cpu[k] >= 0 for k in ("segment", "recognize"))
    start = report["startup"]
    assert start["help_seconds"] > 0 and start["scan_one_page_fresh_seconds"] > start["scan_one_page_warm_seconds"] > 0
    tess = report["tesseract"]
    if shutil.which("tesseract"):
        assert tess["pages"] == 2 and tess["tesseract_seconds"] > 0 and tess["formreader_seconds"] > 0
        assert tess["speedup"] == pytest.approx(tess["tesseract_seconds"] / tess["formreader_seconds"], rel=0.01)
    else:
        assert "skipped" in tess
    rec = report["recognizer"]
    assert rec["crops"] == cpu["crops"] and rec["crops_per_s"] > 0 and rec["providers"] == ["CPUExecutionProvider"]
    assert "not measured" in report["cuda"] and "CPUExecutionProvider" in report["cuda"]
    assert "decode only" in result.output and "vs decode" in result.output


def test_speed_benchmark_refuses_a_missing_folder(tmp_path: Path):
    result = runner.invoke(app, ["benchmark", "--speed", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "not a folder" in result.output
