"""`formreader scan`: files in, one row per page out, with progress (in pages) and a summary.

Everything that can be checked is checked before the first page is read: the output's name and
folder, the crops folder, the settings (config.validate), the template, the model, the resume
journal. With `resume`, finished files go to a journal beside the output as they complete, and a
rerun of the same command after a crash reads only the rest (formreader.resume).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from formreader.config import Config
from formreader.errors import ConfigError, InputError
from formreader.engines import check_engine, discover_inputs
from formreader.pipeline import Scanner
from formreader.recognize.ensemble import load_reader
from formreader.records import PageRecord, Timings
from formreader.resume import FileKey, ScanJournal, journal_path
from formreader.template import Template
from formreader.writers import columns, output_format, rows, write_rows

MAX_FAILURES_LISTED = 50
# Settings that change speed, never rows: a resumed scan may use other values.
NOT_IN_ROWS = {"device", "threads", "workers", "batch_size"}


@dataclass
class ScanSummary:
    files: int = 0
    pages: int = 0
    failed: int = 0  # pages with an error (unreadable file, page not matching the template)
    review: int = 0
    resumed_files: int = 0  # files whose rows came from the resume journal
    read: int = 0  # pages read in this run (the others came from the journal)
    seconds: float = 0.0
    timings: Timings = field(default_factory=Timings)

    def add(self, row: dict[str, object], timings: Timings | None = None) -> None:
        self.pages += 1
        self.failed += bool(row.get("error"))
        self.review += bool(row.get("needs_review"))
        if timings is not None:
            self.read += 1
            self.timings.merge(timings)


def check_output(out: Path, crops_dir: Path | None = None) -> None:
    """Refuse an output (or crops folder) that could not be written, before any work."""
    out = Path(out)
    output_format(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name ending in .csv, .json or .jsonl")
    _check_writable_folder(out.parent, f"--out {out}")
    if crops_dir is not None:
        if Path(crops_dir).exists() and not Path(crops_dir).is_dir():
            raise ConfigError(f"--crops {crops_dir} exists and is not a folder")
        _check_writable_folder(Path(crops_dir), f"--crops {crops_dir}")


def _check_writable_folder(folder: Path, what: str) -> None:
    """The folder, or its nearest existing parent (folders are created later), takes a file."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):  # the real test: permissions, ACLs, read-only mounts
            pass
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write in {existing} ({exc.strerror or exc})") from exc


def run_scan(inputs: list[Path | str], out: Path, cfg: Config, crops_dir: Path | None = None, console: Console | None = None,
             resume: bool = False) -> ScanSummary:
    console = console or Console(stderr=True)
    check_output(out, crops_dir)
    files = discover_inputs(inputs, check_engine(cfg.engine))
    if not files:
        raise InputError(f"no PDF or image files found in {', '.join(map(str, inputs))}")
    template = Template.load(cfg.template)
    field_names = template.layout.field_names
    keys = [FileKey.of(f) for f in files]
    journal = None
    if resume:
        journal = ScanJournal(journal_path(out), _resume_settings(cfg, template, crops_dir, field_names)).open()
    elif journal_path(out).exists():
        console.print(f"[yellow]note:[/] {escape(str(journal_path(out)))} holds the finished files of an interrupted scan; "
                      "add --resume to continue it instead of starting over")
    try:
        table = _scan_files(files, keys, journal, _scanner(template, cfg, crops_dir), field_names, console)
        summary = table.summary
        write_rows(out, table.rows, columns(field_names))
    finally:
        if journal is not None:
            journal.close()
    if journal is not None:
        journal.remove()  # the output now holds every row
    console.print(summary_table(summary, out))
    failures = [r for r in table.rows if r.get("error")]
    for r in failures[:MAX_FAILURES_LISTED]:
        # Text, not markup: a file name or an error may hold brackets that markup would eat.
        console.print(Text.assemble(("failed", "red"), f" {r['file']} page {r['page']}: {r['error']}"), highlight=False)
    if len(failures) > MAX_FAILURES_LISTED:
        console.print(f"… and {len(failures) - MAX_FAILURES_LISTED} more failed pages (see the error column of {out})", markup=False)
    return summary


def _scanner(template: Template, cfg: Config, crops_dir: Path | None):
    if cfg.engine == "ray":  # imported only here: the default install and path never load Ray
        from formreader.engines.ray_engine import RayScanner

        return RayScanner(template, cfg, crops_dir, loader=load_reader)  # actors load what a local scan loads
    return Scanner(template, load_reader(cfg.model, cfg.recognizer()), cfg.pipeline(), crops_dir, cfg.workers)


@dataclass
class _Table:
    rows: list[dict[str, object]]
    summary: ScanSummary


def _scan_files(files: list[Path], keys: list[FileKey], journal: ScanJournal | None, scanner: Scanner,
                field_names: list[str], console: Console) -> _Table:
    """Rows of every file in input order: from the journal when it has them, else read now."""
    summary = ScanSummary(files=len(files))
    found = [journal.rows_for(k) if journal is not None else None for k in keys]
    for file_rows in found:
        if file_rows is not None:
            summary.resumed_files += 1
            for row in file_rows:
                summary.add(row)
    todo = [i for i, file_rows in enumerate(found) if file_rows is None]
    finished = iter(todo)  # Scanner.on_file comes once per file, in input order
    start = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task("scanning", total=len(todo), files=0, rate=0.0)

        def on_open(path: Path, pages: int) -> None:
            progress.update(task, total=progress.tasks[task].total + pages - 1)  # each file was counted as 1 page

        def on_page(record: PageRecord) -> None:
            summary.add(record.row(field_names), record.timings)
            rate = summary.read / max(time.perf_counter() - start, 1e-6)
            progress.update(task, advance=1, rate=rate)

        def on_file(path: Path, recs: list[PageRecord]) -> None:
            i = next(finished)
            found[i] = rows(recs, field_names, detail=True)
            if journal is not None:
                journal.add(keys[i], found[i])
            progress.update(task, files=progress.tasks[task].fields["files"] + 1)

        for _ in scanner.scan([files[i] for i in todo], on_file=on_file, on_open=on_open, on_page=on_page):
            pass
    summary.seconds = time.perf_counter() - start
    return _Table([row for file_rows in found for row in file_rows], summary)


def _resume_settings(cfg: Config, template: Template, crops_dir: Path | None, field_names: list[str]) -> dict[str, object]:
    """What makes the rows: a journal written under other settings must not be mixed in."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()
                if k not in NOT_IN_ROWS}
    settings.update(template_name=template.name, columns=field_names, crops=str(crops_dir) if crops_dir else None)
    return settings


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages · {task.fields[files]} files · {task.fields[rate]:.1f} pages/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def summary_table(summary: ScanSummary, out: Path) -> Table:
    table = Table(title=f"formreader scan → {escape(str(out))}", show_header=False)
    table.add_row("files", str(summary.files) + (f" ({summary.resumed_files} from the resume journal)" if summary.resumed_files else ""))
    table.add_row("pages", str(summary.pages))
    table.add_row("failed pages", f"[red]{summary.failed}[/]" if summary.failed else "0")
    table.add_row("needs review", str(summary.review))
    table.add_row("time", f"{summary.seconds:.2f} s ({summary.read / max(summary.seconds, 1e-9):.1f} pages/s)")
    for stage, sec in summary.timings.seconds.items():
        table.add_row(f"  {stage}", f"{sec:.2f} s")
    return table
