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
    review_threshold: Annotated[Optional[float], typer.Option(help="Fields below this confidence set needs_review.")] = None,
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
                      decoder=decoder, lexicon=lexicon, review_threshold=review_threshold, dpi=dpi)
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
) -> None:
    """Read a folder of single-field crops (no template); printed prefixes such as `NOM :` are stripped.

    Example:

        formreader read ./crops --out crops.csv
    """
    from formreader.commands.read import run_read

    try:
        cfg = _config(config, model=model, device=device, threads=threads, batch_size=batch_size, decoder=decoder, lexicon=lexicon)
        failed = run_read(inputs, out, cfg, console=err)
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
