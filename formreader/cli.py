"""The `formreader` command. Thin: options in, library calls, library errors -> exit codes.

Exit codes: 0 all pages read; 1 some file or page failed (its row carries the error);
2 bad usage, configuration, template, model or output location (nothing was read);
3 formreader crashed (a bug: one line on stderr, the traceback in a file it names); 130 interrupted.
Every command uses these codes.
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from formreader.errors import FormreaderError

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USAGE, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    help="Read handwritten forms (NOM, PRENOM, DATE DE NAISSANCE, ...) into clean CSV/JSON rows.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
template_app = typer.Typer(help="Build and inspect form templates.", no_args_is_help=True)
app.add_typer(template_app, name="template")
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # only when asked: start-up stays lean

        typer.echo(f"formreader {version('formreader')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", help="Print the installed version and exit.",
                                               callback=_version, is_eager=True)] = False,
) -> None:
    # Options of the command itself; the app's help text stays the one given to typer.Typer above.
    pass


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML settings file (defaults < file < options).", exists=True, dir_okay=False)]
TemplateOpt = Annotated[Optional[Path], typer.Option("--template", "-t", help="Template folder (default: bundled fiche-a).", file_okay=False)]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="ONNX recognizer (default: bundled CRNN).", dir_okay=False)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto (CUDA when it loads, else CPU), cpu or cuda.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the recognizer (0: all cores).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Crops per recognizer batch.")]
DecoderOpt = Annotated[Optional[str], typer.Option("--decoder", help="greedy (fast) or beam.")]
ReviewOpt = Annotated[Optional[float], typer.Option("--review-threshold", help="Fields below this confidence set needs_review.")]
SecondOpt = Annotated[Optional[str], typer.Option("--second-opinion", help="When PP-OCRv5 reads next to the CRNN: always (default, most accurate), cascade (only fields the CRNN reads below --cascade-below) or off (CRNN alone, fastest).")]
ExpertsOpt = Annotated[Optional[str], typer.Option("--experts", help="Field experts read next to the CRNN on the field kinds their model files name: bundled (default: the date expert), none, or ONNX files separated by commas.")]
LexiconOpt = Annotated[Optional[str], typer.Option("--lexicon", help="Names prior for name fields: bundled (default: INSEE French first names and the 20,000 most frequent surnames), none, or your names list (CSV with a NAME column and optional COUNT, or one name a line).")]


def _fail(exc: FormreaderError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)  # messages quote [x, y] lists: not markup
    return typer.Exit(EXIT_USAGE)


@contextmanager
def _exit_codes(hint: str = ""):
    """Library errors -> 2, Ctrl-C -> 130, anything unexpected -> 3 with the traceback in a file."""
    try:
        yield
    except FormreaderError as exc:
        raise _fail(exc)
    except typer.Exit:  # a command's own exit code (typer.Exit is a RuntimeError)
        raise
    except KeyboardInterrupt:
        err.print(f"[bold red]interrupted[/]{hint}")
        raise typer.Exit(EXIT_INTERRUPTED)
    except Exception as exc:  # the edge: a bug must not look like "some pages failed"
        raise _crash(exc, hint)


def _crash(exc: BaseException, hint: str = "") -> typer.Exit:
    text = "".join(traceback.format_exception(exc))
    try:
        with tempfile.NamedTemporaryFile("w", prefix=f"formreader-crash-{time.strftime('%Y%m%d-%H%M%S')}-",
                                         suffix=".log", delete=False, encoding="utf-8", errors="replace") as fh:
            fh.write(f"formreader {' '.join(map(repr, sys.argv[1:]))}\n{text}")
        where = f"traceback in {fh.name}"
    except OSError:
        where = "traceback follows"
        sys.stderr.write(text)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    err.print(f"[bold red]formreader crashed[/] ({type(exc).__name__}: {escape(first)}); this is a bug, please report it; "
              f"{escape(where)}{hint}", highlight=False)
    return typer.Exit(EXIT_CRASH)


def _config(config: Optional[Path], **overrides):
    from formreader.config import load_config

    return load_config(config, overrides)


@app.command()
def scan(
    # str, not Path: pathlib would fold "s3://bucket/key" into "s3:/bucket/key".
    inputs: Annotated[list[str], typer.Argument(help="PDF/image files or folders (searched recursively); with --engine ray also s3://, gs://, file:// URIs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv, .json, .jsonl, .xlsx (Excel: rows to review shaded) or .parquet.")],
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
    experts: ExpertsOpt = None,
    review_threshold: ReviewOpt = None,
    dpi: Annotated[Optional[float], typer.Option(help="Resolution PDFs are rendered at (50-1200).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Record finished files in OUT.resume as they complete; after a crash or kill, the same command reads only the rest.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Threads (local) or Ray actors on a local Ray reading and aligning files.", min=1)] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="local (this process) or ray (Ray Data: a local Ray, or the cluster at --ray-address; needs formreader[ray]).")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to run on (default: $RAY_ADDRESS, else a Ray started for this run).")] = None,
) -> None:
    """Scan filled-in forms and write one row per page.

    Exit codes: 0 every page read; 1 some pages failed (their rows say why); 2 bad options or
    output location (nothing read); 3 crash (a bug; the traceback goes to a file); 130 Ctrl-C.

    Examples:

        formreader scan ./scans --out results.csv

        formreader scan a.pdf b.jpg --out results.jsonl --template ./my-form --crops ./crops

        formreader scan ./archive --out archive.csv --resume    (run it again after a crash)

        RAY_ADDRESS=auto formreader scan s3://bucket/scans --out results.parquet --engine ray
    """
    from formreader.commands.scan import run_scan

    hint = "; run the same command again to finish the rest" if resume else ""
    with _exit_codes(hint):
        cfg = _config(config, template=template, model=model, device=device, threads=threads, batch_size=batch_size,
                      decoder=decoder, lexicon=lexicon, second_opinion=second_opinion, experts=experts, review_threshold=review_threshold,
                      dpi=dpi, workers=workers, engine=engine, ray_address=ray_address)
        summary = run_scan(inputs, out, cfg, crops_dir=crops, console=err, resume=resume)
    raise typer.Exit(EXIT_FAILED_ITEMS if summary.failed else EXIT_OK)


@app.command()
def read(
    inputs: Annotated[list[Path], typer.Argument(help="Field crop images or folders of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV (file,text,confidence,needs_review,error).")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = None,
    decoder: DecoderOpt = None,
    lexicon: LexiconOpt = None,
    second_opinion: SecondOpt = None,
    experts: ExpertsOpt = None,
    kind: Annotated[str, typer.Option(help="name (letters, upper-case), text (free), date (ISO YYYY-MM-DD), digits, or raw (as recognized).")] = "name",
    review_threshold: ReviewOpt = None,
) -> None:
    """Read a folder of single-field crops (no template); printed prefixes such as `NOM :` are stripped.

    A crop that also holds a neighbouring line of its form, and makes no sense read whole, is read
    again line by line. needs_review is set as on forms: an invalid value, or a confidence below
    --review-threshold.

    Example:

        formreader read ./crops --out crops.csv
    """
    from formreader.commands.read import run_read

    with _exit_codes():
        cfg = _config(config, model=model, device=device, threads=threads, batch_size=batch_size, decoder=decoder, lexicon=lexicon, second_opinion=second_opinion, experts=experts, review_threshold=review_threshold)
        failed = run_read(inputs, out, cfg, kind, console=err)
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

    with _exit_codes():
        tpl = create_template(blank, layout, dpi)
        tpl.save(out)
    err.print(f"template [bold]{escape(tpl.name)}[/] with fields {escape(', '.join(tpl.layout.field_names))} written to {escape(str(out))}")


@template_app.command("show")
def template_show(template: TemplateOpt = None) -> None:
    """Print a template's fields and their boxes."""
    from formreader.template import Template

    with _exit_codes():
        tpl = Template.load(template)
    typer.echo(f"{tpl.name}: {tpl.blank.shape[1]}x{tpl.blank.shape[0]} px at {tpl.dpi:.0f} dpi")
    for f in tpl.layout.fields:
        typer.echo(f"  {f.name:<12} {f.kind:<5} box_mm={list(f.value_mm)} label={f.label!r}")


@app.command()
def review(
    results: Annotated[Path, typer.Argument(help="Results of `scan ... --crops DIR` (.csv, .json or .jsonl).", exists=True, dir_okay=False)],
    crops: Annotated[Path, typer.Option("--crops", help="The crops folder of that scan.", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The review page to write (.html, self-contained).", dir_okay=False)],
    all_fields: Annotated[bool, typer.Option("--all", help="Every field of every readable page, not only the doubtful ones.")] = False,
    config: ConfigOpt = None,
    template: TemplateOpt = None,
    review_threshold: ReviewOpt = None,
) -> None:
    """Write one HTML page to check and correct the doubtful fields by keyboard, crop beside value.

    Doubtful fields come first (pages that need review, lowest confidence first). In the page:
    Enter accepts a value and moves on, typing corrects it, Tab/arrows move, Alt+1..9 takes an
    alternative, and Export (Ctrl+S) downloads corrections.csv (file,page,field,value) with every
    field you confirmed or changed. Opens from disk: no server, no network.

    Examples:

        formreader scan ./scans --out results.csv --crops ./crops

        formreader review results.csv --crops ./crops --out review.html

        formreader review results.jsonl --crops ./crops --out review.html --all
    """
    from formreader.commands.review import run_review

    with _exit_codes():
        cfg = _config(config, template=template, review_threshold=review_threshold)
        run_review(results, crops, out, cfg, all_fields, console=err)


@app.command("apply")
def apply_cmd(
    results: Annotated[Path, typer.Argument(help="Results of `scan` (.csv, .json or .jsonl).", exists=True, dir_okay=False)],
    corrections: Annotated[Path, typer.Argument(help="corrections.csv exported by the review page (file,page,field,value).", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Final results: .csv, .json or .jsonl.", dir_okay=False)],
    config: ConfigOpt = None,
    template: TemplateOpt = None,
    review_threshold: ReviewOpt = None,
) -> None:
    """Write the results with a reviewer's corrections applied.

    Corrected values are normalized and validated as scan does (names upper-case, dates ISO),
    get confidence 1.0 and stop flagging their page; `needs_review` stays true while the page has
    an error or other doubtful fields. A `corrected` column lists the fields whose value changed.
    Every other value is written as read. A correction naming an unknown row or field is an error
    (exit 2, nothing written).

    Example:

        formreader apply results.csv corrections.csv --out final.csv
    """
    from formreader.commands.review import run_apply

    with _exit_codes():
        cfg = _config(config, template=template, review_threshold=review_threshold)
        run_apply(results, corrections, out, cfg, console=err)


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
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="A file that crashed the daemon this many times while read alone is failed (after a crash, files in flight are retried one at a time).", min=1)] = 5,
    empty_grace: Annotated[float, typer.Option("--empty-grace", help="Seconds an empty (0-byte) file waits for its writer before it is failed.", min=0.0)] = 60.0,
    stop_grace: Annotated[float, typer.Option("--stop-grace", help="First SIGTERM/SIGINT: seconds files in flight get to finish; the rest wait for the next start.", min=0.0)] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="Process what is in the inbox, then exit (cron).")] = False,
    status: Annotated[bool, typer.Option("--status", help="Print done/failed/pending counts and throughput for --state (or INBOX/.formreader), then exit.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Threads reading and aligning files.", min=1)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    fault_pause: Annotated[float, typer.Option("--fault-pause", hidden=True, help="Crash tests: pause inside the commit path.")] = 0.0,
    fault_crash_on: Annotated[str, typer.Option("--fault-crash-on", hidden=True, help="Crash tests: kill -9 the daemon when it reads a file whose name contains this.")] = "",
    config: ConfigOpt = None,
    template: TemplateOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = None,
    decoder: DecoderOpt = None,
    lexicon: LexiconOpt = None,
    second_opinion: SecondOpt = None,
    experts: ExpertsOpt = None,
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

    with _exit_codes():
        if status:
            if state is None and inbox is None:
                raise ConfigError("--status needs --state DIR (or the INBOX whose default state it reads)")
            typer.echo(status_text(state or inbox / ".formreader"))
            raise typer.Exit(EXIT_OK)
        if inbox is None or out is None:
            raise ConfigError("watch needs an INBOX folder and --out FILE.jsonl|.csv")
        setup_logging(verbose)
        cfg = _config(config, template=template, model=model, device=device, threads=threads, batch_size=batch_size,
                      decoder=decoder, lexicon=lexicon, second_opinion=second_opinion, experts=experts, workers=workers)
        settings = WatchSettings.for_inbox(inbox, out, state, done, failed, settle=settle, poll=poll, latency=latency,
                                           max_attempts=max_attempts, empty_grace=empty_grace, stop_grace=stop_grace,
                                           workers=cfg.workers, once=once, fault_pause=fault_pause,
                                           fault_crash_on=fault_crash_on)
        run_watch(settings, cfg)
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

    with _exit_codes():
        run_synth(out, pages, preset, names, digits, shared_root(data_root), template, formats, max_pdf_pages, seed,
                  blank_rate, optional_rate, dpi, console=err)


@app.command()
def benchmark(
    labelled: Annotated[Path, typer.Argument(help="Labelled set: a form set (folder + truth.csv) or a crop set (images + labels.csv, Kaggle format); with --speed, any folder of scans.", file_okay=False)],
    report: Annotated[Optional[Path], typer.Option("--report", "-r", help="Write the JSON report here, with .fields.png, .coverage.png, .errors.html and .items.csv beside it.", dir_okay=False)] = None,
    compare: Annotated[Optional[list[str]], typer.Option("--compare", help="Add a baseline row: tesseract, ppocr (PP-OCRv5 alone). Repeat for both.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Crop sets: score only this SPLIT of labels.csv (e.g. val).")] = None,
    worst: Annotated[int, typer.Option("--worst", help="Rows on the worst-errors page.")] = 40,
    speed: Annotated[bool, typer.Option("--speed", help="Speed instead of accuracy: decode-only vs scan pages/s, time per stage, start-up, peak memory, on any folder of scans (no truth needed).")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="--speed: processes decoding and workers scanning (same for both).", min=1)] = None,
    tesseract_pages: Annotated[int, typer.Option("--tesseract-pages", help="--speed: also time `tesseract PAGE - -l fra` against `formreader scan` on this many pages (0: off).", min=0)] = 0,
    generate: Annotated[Optional[int], typer.Option("--generate", help="--speed: first write a mixed set of this many pages (PDF, JPEG, PNG, TIFF at 200 dpi) into the folder with `formreader synth`.", min=1)] = None,
    config: ConfigOpt = None,
    template: TemplateOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = None,
    decoder: DecoderOpt = None,
    lexicon: LexiconOpt = None,
    second_opinion: SecondOpt = None,
    experts: ExpertsOpt = None,
    review_threshold: ReviewOpt = None,
) -> None:
    """Measure how well and how fast formreader reads a labelled set.

    Examples:

        formreader benchmark samples --report out/samples.json

        formreader benchmark out/bench-hard --compare tesseract --report out/hard.json

        formreader benchmark ../shared/data/kaggle-names/dev --split val --compare tesseract

        formreader benchmark --speed out/speed200 --generate 200 --tesseract-pages 20 --report out/speed.json
    """
    from formreader.commands.benchmark import run_benchmark, run_speed_benchmark

    with _exit_codes():
        cfg = _config(config, template=template, model=model, device=device, threads=threads, batch_size=batch_size,
                      decoder=decoder, lexicon=lexicon, second_opinion=second_opinion, experts=experts, review_threshold=review_threshold,
                      workers=workers)
        if speed:
            run_speed_benchmark(labelled, cfg, report, tesseract_pages, generate, console=err)
        else:
            run_benchmark(labelled, cfg, report, compare or [], split, worst, console=err)
