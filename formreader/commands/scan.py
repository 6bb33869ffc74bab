"""`formreader scan`: files in, one row per page out, with progress and a summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from formreader.config import Config
from formreader.errors import InputError
from formreader.ingest import discover
from formreader.pipeline import Scanner
from formreader.recognize.ensemble import load_reader
from formreader.records import PageRecord, Timings
from formreader.template import Template
from formreader.writers import output_format, write_records


@dataclass
class ScanSummary:
    files: int = 0
    pages: int = 0
    failed: int = 0  # pages with an error (unreadable file, page not matching the template)
    review: int = 0
    seconds: float = 0.0
    timings: Timings = field(default_factory=Timings)

    def add(self, record: PageRecord) -> None:
        self.pages += 1
        self.failed += bool(record.error)
        self.review += record.needs_review
        self.timings.merge(record.timings)


def run_scan(inputs: list[Path], out: Path, cfg: Config, crops_dir: Path | None = None, console: Console | None = None) -> ScanSummary:
    console = console or Console(stderr=True)
    output_format(out)  # refuse a bad extension before any work
    files = discover(inputs)
    if not files:
        raise InputError(f"no PDF or image files found in {', '.join(map(str, inputs))}")
    template = Template.load(cfg.template)
    scanner = Scanner(template, load_reader(cfg.model, cfg.recognizer()), cfg.pipeline(), crops_dir, cfg.workers)
    summary = ScanSummary(files=len(files))
    records: list[PageRecord] = []
    start = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task("scanning", total=len(files), pages=0, rate=0.0)

        def on_file(path: Path, recs: list[PageRecord]) -> None:
            for r in recs:
                summary.add(r)
            rate = summary.pages / max(time.perf_counter() - start, 1e-6)
            progress.update(task, advance=1, pages=summary.pages, rate=rate)

        records.extend(scanner.scan(files, on_file=on_file))
    summary.seconds = time.perf_counter() - start
    write_records(out, records, template.layout.field_names)
    console.print(summary_table(summary, out))
    for r in records:
        if r.error:
            console.print(f"[red]failed[/] {r.file} page {r.page}: {r.error}")
    return summary


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[pages]} pages · {task.fields[rate]:.1f} pages/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def summary_table(summary: ScanSummary, out: Path) -> Table:
    table = Table(title=f"formreader scan → {out}", show_header=False)
    table.add_row("files", str(summary.files))
    table.add_row("pages", str(summary.pages))
    table.add_row("failed pages", f"[red]{summary.failed}[/]" if summary.failed else "0")
    table.add_row("needs review", str(summary.review))
    table.add_row("time", f"{summary.seconds:.2f} s ({summary.pages / max(summary.seconds, 1e-9):.1f} pages/s)")
    for stage, sec in summary.timings.seconds.items():
        table.add_row(f"  {stage}", f"{sec:.2f} s")
    return table
