"""`formreader synth`: generate a labelled set of filled-in, scanned-looking forms."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from formreader.errors import ConfigError
from formreader.synth import (
    FORMATS,
    FillSettings,
    SetSpec,
    build_filler,
    preset,
    write_form_set,
)
from formreader.synth.formset import SetSummary
from formreader.template import Template


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    formats = tuple({"jpeg": "jpg", "tiff": "tif"}.get(f, f) for f in formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--formats: unknown {bad or text!r} (choose from {','.join(FORMATS)})")
    return formats


def run_synth(
    out: Path,
    pages: int,
    preset_name: str,
    names: str,
    digits: str,
    data_root: Path,
    template_dir: Path | None = None,
    formats: str = ",".join(FORMATS),
    max_pdf_pages: int = 3,
    seed: int = 0,
    blank_rate: float = 0.03,
    optional_rate: float = 0.3,
    dpi: float | None = None,
    console: Console | None = None,
) -> SetSummary:
    console = console or Console(stderr=True)
    if not 0.0 <= blank_rate <= 1.0 or not 0.0 <= optional_rate <= 1.0:
        raise ConfigError("--blank-rate and --optional-rate are fractions between 0 and 1")
    spec = SetSpec(pages=pages, preset=preset(preset_name), formats=parse_formats(formats), max_pdf_pages=max_pdf_pages, seed=seed, dpi=dpi)
    spec.check()
    if (Path(out) / "truth.csv").exists():
        raise ConfigError(f"{out}: already holds a form set (truth.csv); choose an empty folder")
    template = Template.load(template_dir)
    filler = build_filler(template, data_root, names, digits, FillSettings(blank_rate=blank_rate, optional_rate=optional_rate))
    provenance = {"template": template.name, "names": names, "digits": digits, "blank_rate": blank_rate, "optional_rate": optional_rate}
    excluded = getattr(filler.names, "excluded", None)
    if excluded is not None:  # real crops that still hold printed lines of their own form
        mislabelled = filler.names.mislabelled
        provenance["name_crops"] = {"used": len(filler.names.inks), "excluded_printed_lines": excluded,
                                    "excluded_known_wrong_labels": mislabelled}
        console.print(f"name crops: {len(filler.names.inks)} used, {excluded} left out (printed lines of their original form), "
                      f"{mislabelled} left out (known wrong labels)")
    start = time.perf_counter()
    with Progress(TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(), TextColumn("pages"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task("synth", total=pages)
        summary = write_form_set(out, filler, spec, on_page=lambda n: progress.update(task, completed=n), provenance=provenance)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in summary.files) / 1e6
    counts = {fmt: sum(1 for f in summary.files if f.suffix == f".{fmt}") for fmt in spec.formats}
    console.print(
        f"{summary.pages} pages in {len(summary.files)} files ({', '.join(f'{n} {k}' for k, n in counts.items())}; "
        f"{size:.1f} MB) in {seconds:.1f} s, preset [bold]{preset_name}[/], names {escape(str(names))}, digits {escape(str(digits))} → {escape(str(out))}\n"
        f"truth → {escape(str(summary.truth))}"
    )
    return summary
