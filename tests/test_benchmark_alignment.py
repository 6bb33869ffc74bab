"""Every benchmark lives in formreader/benchmark/; `python -m formreader.benchmark.alignment` prints
one row per perturbation and clean pages align exactly."""

from __future__ import annotations

from pathlib import Path

from formreader.benchmark import alignment

ROOT = Path(__file__).resolve().parents[1]


def test_alignment_benchmark_prints_a_row_per_perturbation(capsys, monkeypatch):
    levels = {k: alignment.LEVELS[k] for k in ("clean", "limits + blur 5 + noise 12 + jpeg 30", "upside down")}
    monkeypatch.setattr(alignment, "LEVELS", levels)  # three of the twelve keep the test fast
    alignment.main(["--pages", "1"])
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["perturbation", "aligned", "score"]
    assert [row[:44].rstrip() for row in rows] == list(levels)
    clean = rows[0][44:].split()
    assert clean[0] == "1/1" and float(clean[1]) > 0.95 and float(clean[2]) < 1.0  # aligned, score, px error


def test_benchmarks_live_in_one_place():
    strays = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").glob("*.py"))
    assert not strays, f"benchmarks live in formreader/benchmark/ (README 'Benchmarks'), move: {strays}"
