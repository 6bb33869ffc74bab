"""`formreader review` and `formreader apply`: the human half of the loop, around the library."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from formreader.config import Config
from formreader.corrections import apply_corrections, read_corrections
from formreader.errors import ConfigError
from formreader.results import read_results
from formreader.review import build_review
from formreader.template import Template
from formreader.writers import atomic_write_text, output_format, write_rows


def _kinds(cfg: Config) -> dict[str, str]:
    return {f.name: f.kind for f in Template.load(cfg.template).layout.fields}


def run_review(results_path: Path, crops: Path, out: Path, cfg: Config, include_all: bool, console: Console) -> int:
    """Write the review page; returns the number of fields on it."""
    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"{out}: the review page must end in .html")
    results = read_results(results_path)
    page, review = build_review(results, crops, _kinds(cfg), cfg.review_threshold, include_all)
    atomic_write_text(out, page)
    pages = len({(it.file, it.page) for it in review.items})
    console.print(f"[bold]{len(review.items)}[/] field(s) on {pages} page(s) to review → {escape(str(out))} "
                  f"({Path(out).stat().st_size / 1e6:.1f} MB; open it in a browser, no server needed)")
    if review.missing_crops:
        console.print(f"[yellow]warning:[/] {review.missing_crops} crop(s) not found in {escape(str(crops))}: those fields show no image")
    if review.errors:
        console.print(f"[yellow]note:[/] {len(review.errors)} page(s) with an error have nothing to review (listed at the top of the page)")
    return len(review.items)


def run_apply(results_path: Path, corrections_path: Path, out: Path, cfg: Config, console: Console) -> None:
    output_format(out)  # refuse a bad extension before any work
    results = read_results(results_path)
    corrections = read_corrections(corrections_path)
    rows, columns, summary = apply_corrections(results, corrections, _kinds(cfg), cfg.review_threshold, corrections_path)
    write_rows(out, rows, columns)
    console.print(f"{summary.corrections} correction(s) on {summary.pages} page(s): {summary.changed} value(s) changed, "
                  f"{summary.cleared} page(s) no longer need review → {out}", markup=False)
    for warning in summary.warnings:
        console.print(f"[yellow]still doubtful:[/] {escape(warning)}")
    if summary.still_review:
        console.print(f"{len(summary.still_review)} corrected page(s) still need review (errors or other doubtful fields)")
