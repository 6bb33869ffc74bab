"""The `formreader` command. Thin: options in, library calls, library errors -> exit codes.

Exit codes: 0 all pages read; 1 some file or page failed (its row carries the error);
2 bad usage, configuration, template or model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from formreader.errors import FormreaderError

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    help="Read handwritten forms (NOM, PRENOM, DATE DE NAISSANCE, ...) into clean CSV/JSON rows.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
template_app = typer.Typer(help="Build and inspect form templates.", no_args_is_help=True)
app.add_typer(template_app, name="template")
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML settings file (defaults < file < options).", exists=True, dir_okay=False)]
TemplateOpt = Annotated[Optional[Path], typer.Option("--template", "-t", help="Template folder (default: bundled fiche-a).", file_okay=False)]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="ONNX recognizer (default: bundled CRNN).", dir_okay=False)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto (CUDA when it loads, else CPU), cpu or cuda.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the recognizer (0: all cores).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Crops per recognizer batch.")]
DecoderOpt = Annotated[Optional[str], typer.Option("--decoder", help="greedy (fast) or beam.")]
ReviewOpt = Annotated[Optional[float], typer.Option("--review-threshold", help="Fields below this confidence set needs_review.")]
SecondOpt = Annotated[Optional[str], typer.Option("--second-opinion", help="When PP-OCRv5 reads next to the CRNN: always (default, most accurate), cascade (only fields the CRNN reads below --cascade-below) or off (CRNN alone, fastest).")]
LexiconOpt = Annotated[Optional[Path], typer.Option("--lexicon", help="Names list (CSV with NAME column) used as a prior by the beam decoder.", dir_okay=False)]


def _fail(exc: FormreaderError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(EXIT_USAGE)


def _config(config: Optional[Path], **overrides):
    from formreader.config import load_config

    return load_config(config, overrides)


@app.command()
def scan(
    inputs: Annotated[list[Path], typer.Argument(help="PDF/image files or folders (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv, .json or .jsonl.")],
    crops: Annotated[Optional[Path], typer.Option("--crops", help="Save every field crop here for human review.", file_okay=False)] = None,
    config: ConfigOpt = None,
    template: TemplateOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = None,
    decoder: DecoderOpt = None,
    lexicon: LexiconOpt = None,
    second_opinion: SecondOpt = None,
    review_threshold: ReviewOpt = None,
    dpi: Annotated[Optional[float], typer.Option(help="Resolution PDFs are rendered at.")] = None,
) -> None:
    """Scan filled-in forms and write one row per page.

    Examples:

        formreader scan ./scans --out results.csv

        formreader scan a.pdf b.jpg --out results.jsonl --template ./my-form --crops ./crops
    """
    from formreader.commands.scan import run_scan

    try:
        cfg = _config(config, template=template, model=model, device=device, threads=threads, batch_size=batch_size,
                      decoder=decoder, lexicon=lexicon, second_opinion=second_opinion, review_threshold=review_threshold, dpi=dpi)
        summary = run_scan(inputs, out, cfg, crops_dir=crops, console=err)
    except FormreaderError as exc:
        raise _fail(exc)
    raise typer.Exit(EXIT_FAILED_ITEMS if summary.failed else EXIT_OK)


@app.command()
def read(
    inputs: Annotated[list[Path], typer.Argument(help="Field crop images or folders of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV (file,text,confidence).")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = None,
    decoder: DecoderOpt = None,
    lexicon: LexiconOpt = None,
    second_opinion: SecondOpt = None,
    kind: Annotated[str, typer.Option(help="name (letters, upper-case), text (free), date (ISO YYYY-MM-DD), digits, or raw (as recognized).")] = "name",
) -> None:
    """Read a folder of single-field crops (no template); printed prefixes such as `NOM :` are stripped.

    Example:

        formreader read ./crops --out crops.csv
    """
    from formreader.commands.read import run_read

    try:
        cfg = _config(config, model=model, device=device, threads=threads, batch_size=batch_size, decoder=decoder, lexicon=lexicon, second_opinion=second_opinion)
        failed = run_read(inputs, out, cfg, kind, console=err)
    except FormreaderError as exc:
        raise _fail(exc)
    raise typer.Exit(EXIT_FAILED_ITEMS if failed else EXIT_OK)


@template_app.command("create")
def template_create(
    blank: Annotated[Path, typer.Argument(help="The blank form: PDF (first page) or image.", exists=True, dir_okay=False)],
    layout: Annotated[Path, typer.Option("--layout", "-l", help="Field layout JSON (millimetres).", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Template folder to write.", file_okay=False)],
    dpi: Annotated[float, typer.Option(help="Resolution of the stored blank.")] = 200.0,
) -> None:
    """Build a template from a customer's blank form and its layout.

    Example:

        formreader template create blank.pdf --layout layout.json --out ./templates/fiche-a
    """
    from formreader.template import create_template

    try:
        tpl = create_template(blank, layout, dpi)
        tpl.save(out)
    except FormreaderError as exc:
        raise _fail(exc)
    err.print(f"template [bold]{tpl.name}[/] with fields {', '.join(tpl.layout.field_names)} written to {out}")


@template_app.command("show")
def template_show(template: TemplateOpt = None) -> None:
    """Print a template's fields and their boxes."""
    from formreader.template import Template

    try:
        tpl = Template.load(template)
    except FormreaderError as exc:
        raise _fail(exc)
    typer.echo(f"{tpl.name}: {tpl.blank.shape[1]}x{tpl.blank.shape[0]} px at {tpl.dpi:.0f} dpi")
    for f in tpl.layout.fields:
        typer.echo(f"  {f.name:<12} {f.kind:<5} box_mm={list(f.value_mm)} label={f.label!r}")


def main() -> None:  # pragma: no cover - console entry point
    app()


@app.command()
def watch(
    inbox: Annotated[Optional[Path], typer.Argument(help="Folder the scanners drop files into (not searched recursively).", file_okay=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file, appended durably: .jsonl or .csv.", dir_okay=False)] = None,
    state: Annotated[Optional[Path], typer.Option("--state", help="Ledger folder (default: INBOX/.formreader).", file_okay=False)] = None,
    done: Annotated[Optional[Path], typer.Option("--done", help="Where processed files go (default: INBOX/done).", file_okay=False)] = None,
    failed: Annotated[Optional[Path], typer.Option("--failed", help="Where unreadable and non-form files go, each with a .error.txt (default: INBOX/failed).", file_okay=False)] = None,
    poll: Annotated[Optional[float], typer.Option("--poll", help="Poll the folder every SECONDS instead of using filesystem events (network shares).", min=0.05)] = None,
    settle: Annotated[float, typer.Option("--settle", help="Seconds a file's size and mtime must stay unchanged before it is read.", min=0.0)] = 3.0,
    latency: Annotated[float, typer.Option("--latency", help="Longest a file waits for others to fill a recognizer batch (seconds).", min=0.0)] = 2.0,
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="A file in flight at this many crashes is failed instead of retried.", min=1)] = 5,
    once: Annotated[bool, typer.Option("--once", help="Process what is in the inbox, then exit (cron).")] = False,
    status: Annotated[bool, typer.Option("--status", help="Print done/failed/pending counts and throughput for --state (or INBOX/.formreader), then exit.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Threads reading and aligning files.", min=1)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    fault_pause: Annotated[float, typer.Option("--fault-pause", hidden=True, help="Crash tests: pause inside the commit path.")] = 0.0,
    config: ConfigOpt = None,
    template: TemplateOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = None,
    decoder: DecoderOpt = None,
    lexicon: LexiconOpt = None,
    second_opinion: SecondOpt = None,
) -> None:
    """Watch a folder and turn every file dropped there into rows, exactly once, until SIGINT/SIGTERM.

    Files are taken once their size and mtime have settled; each is processed once per content
    (a ledger keyed by SHA-256 survives crashes and restarts), then moved to done/ or failed/.

    Examples:

        formreader watch /srv/scans --out /srv/rows.jsonl

        formreader watch /mnt/share/scans --out rows.csv --poll 5 --state /var/lib/formreader

        formreader watch --status --state /var/lib/formreader
    """
    from formreader.commands.watch import run_watch, setup_logging, status_text
    from formreader.errors import ConfigError
    from formreader.watch.daemon import WatchSettings

    try:
        if status:
            if state is None and inbox is None:
                raise ConfigError("--status needs --state DIR (or the INBOX whose default state it reads)")
            typer.echo(status_text(state or inbox / ".formreader"))
            raise typer.Exit(EXIT_OK)
        if inbox is None or out is None:
            raise ConfigError("watch needs an INBOX folder and --out FILE.jsonl|.csv")
        setup_logging(verbose)
        cfg = _config(config, template=template, model=model, device=device, threads=threads, batch_size=batch_size,
                      decoder=decoder, lexicon=lexicon, second_opinion=second_opinion, workers=workers)
        settings = WatchSettings.for_inbox(inbox, out, state, done, failed, settle=settle, poll=poll, latency=latency,
                                           max_attempts=max_attempts, workers=cfg.workers, once=once,
                                           fault_pause=fault_pause)
        run_watch(settings, cfg)
    except FormreaderError as exc:
        raise _fail(exc)
    raise typer.Exit(EXIT_OK)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the form set to (files + truth.csv).", file_okay=False)],
    pages: Annotated[int, typer.Option("--pages", "-n", help="Pages in the set (PDFs hold 1 to --max-pdf-pages of them).")] = 12,
    preset: Annotated[str, typer.Option("--preset", help="Scan simulation: mild or hard.")] = "mild",
    names: Annotated[str, typer.Option("--names", help="Handwritten names: kaggle-val, kaggle-train (real crops, not redistributable) or fonts (the shared OFL/Apache handwriting fonts: redistributable, for committed samples).")] = "kaggle-val",
    digits: Annotated[str, typer.Option("--digits", help="MNIST slice for dates: reserved (images 50000-59999, for evaluation) or train (0-49999).")] = "reserved",
    formats: Annotated[str, typer.Option("--formats", help="File formats, in turn: any of pdf,jpg,png,tif.")] = "pdf,jpg,png,tif",
    max_pdf_pages: Annotated[int, typer.Option("--max-pdf-pages", help="PDFs get 1 to this many pages.")] = 3,
    blank_rate: Annotated[float, typer.Option("--blank-rate", help="Fraction of fillable fields left blank.")] = 0.03,
    optional_rate: Annotated[float, typer.Option("--optional-rate", help="Fraction of optional fields (fill: false, e.g. CLASSE) that get a value.")] = 0.3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same set.")] = 0,
    dpi: Annotated[Optional[float], typer.Option("--dpi", help="Scan every page at this resolution (default: 150-300 dpi at random).")] = None,
    template: TemplateOpt = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Shared data folder (default: $FORMREADER_SHARED, else ../shared beside the checkout).", file_okay=False)] = None,
) -> None:
    """Generate filled-in, scanned-looking forms with their truth.csv (a labelled form set).

    Examples:

        formreader synth out/bench-mild --pages 200 --preset mild --names kaggle-val

        formreader synth samples --pages 7 --names fonts --formats pdf,jpg,png,tif,pdf --dpi 150 --seed 1
    """
    from formreader.commands.synth import run_synth
    from formreader.paths import shared_root

    try:
        run_synth(out, pages, preset, names, digits, shared_root(data_root), template, formats, max_pdf_pages, seed,
                  blank_rate, optional_rate, dpi, console=err)
    except FormreaderError as exc:
        raise _fail(exc)


@app.command()
def benchmark(
    labelled: Annotated[Path, typer.Argument(help="Labelled set: a form set (folder + truth.csv) or a crop set (images + labels.csv, Kaggle format).", file_okay=False)],
    report: Annotated[Optional[Path], typer.Option("--report", "-r", help="Write the JSON report here, with .fields.png, .coverage.png, .errors.html and .items.csv beside it.", dir_okay=False)] = None,
    compare: Annotated[Optional[list[str]], typer.Option("--compare", help="Add a baseline row: tesseract, ppocr (PP-OCRv5 alone). Repeat for both.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Crop sets: score only this SPLIT of labels.csv (e.g. val).")] = None,
    worst: Annotated[int, typer.Option("--worst", help="Rows on the worst-errors page.")] = 40,
    config: ConfigOpt = None,
    template: TemplateOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = None,
    decoder: DecoderOpt = None,
    lexicon: LexiconOpt = None,
    second_opinion: SecondOpt = None,
    review_threshold: ReviewOpt = None,
) -> None:
    """Measure how well and how fast formreader reads a labelled set.

    Examples:

        formreader benchmark samples --report out/samples.json

        formreader benchmark out/bench-hard --compare tesseract --report out/hard.json

        formreader benchmark ../shared/data/kaggle-names/dev --split val --compare tesseract
    """
    from formreader.commands.benchmark import run_benchmark

    try:
        cfg = _config(config, template=template, model=model, device=device, threads=threads, batch_size=batch_size,
                      decoder=decoder, lexicon=lexicon, second_opinion=second_opinion, review_threshold=review_threshold)
        run_benchmark(labelled, cfg, report, compare or [], split, worst, console=err)
    except FormreaderError as exc:
        raise _fail(exc)
