"""`formreader benchmark`: read a labelled set with the scan pipeline and report accuracy and speed."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from formreader.benchmark import tesseract
from formreader.benchmark.report import (
    Baseline,
    accuracy_table,
    build_report,
    speed_table,
    write_report,
)
from formreader.benchmark.runner import Run, run_crop_set, run_form_set
from formreader.benchmark.sets import CropSet, load_set, normalize_prediction
from formreader.config import Config
from formreader.errors import ConfigError
from formreader.recognize.ensemble import load_reader
from formreader.recognize.predictor import DEFAULT_MODEL
from formreader.template import Template

BASELINES = ("tesseract", "ppocr")


@dataclass
class BenchmarkOutcome:
    report: dict
    run: Run


def run_benchmark(
    set_path: Path,
    cfg: Config,
    report_path: Path | None = None,
    compare: list[str] = (),
    split: str | None = None,
    worst: int = 40,
    console: Console | None = None,
) -> BenchmarkOutcome:
    console = console or Console(stderr=True)
    unknown = [c for c in compare if c not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown} (choose {', '.join(BASELINES)})")
    template = Template.load(cfg.template)
    labelled = load_set(set_path, template.layout.field_names, split)
    predictor = load_reader(cfg.model, cfg.recognizer())
    with tempfile.TemporaryDirectory(prefix="formreader-bench-") as tmp:
        run = _read(labelled, template, predictor, cfg, Path(tmp), console)
        baselines = [_tesseract(run, console)] if "tesseract" in compare and _has_tesseract(console) else []
        if "ppocr" in compare:
            baselines.append(_ppocr(run, cfg, console))
        model = _describe_model(Path(cfg.model or DEFAULT_MODEL))
        report = build_report(run, Path(set_path), model, template.name if run.kind == "forms" else "", cfg.review_threshold, baselines)
        if report_path is not None:
            # Written while the crops still exist: the error page embeds them.
            report = write_report(report, report_path, run, baselines, worst)
    console.print(accuracy_table(report))
    console.print(speed_table(report))
    if report_path is not None:
        files = report["files"]
        console.print(f"report → {report_path}\nplots → {files['fields_png']}, {files['coverage_png']}\nworst errors → {files['errors_html']}",
                      markup=False)
    return BenchmarkOutcome(report, run)


def run_speed_benchmark(folder: Path, cfg: Config, report_path: Path | None = None, tesseract_pages: int = 0,
                        generate: int | None = None, console: Console | None = None) -> dict:
    """`--speed`: decode-only against scan on the same files in one run (formreader.benchmark.speed)."""
    from formreader.benchmark import speed
    from formreader.writers import atomic_write_text

    console = console or Console(stderr=True)
    if generate:
        speed.make_set(folder, generate)
    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: not a folder (--generate N writes a speed set there)")
    with tempfile.TemporaryDirectory(prefix="formreader-speed-") as tmp:
        settings_file = Path(tmp) / "settings.toml"
        settings_file.write_text(speed.config_toml(cfg), encoding="utf-8")
        settings = speed.SpeedSettings(workers=cfg.workers, dpi=cfg.dpi, tesseract_pages=tesseract_pages, config=settings_file)
        with console.status("speed benchmark") as status:
            report = speed.run_speed([Path(folder)], settings, on_phase=lambda name: status.update(f"speed benchmark: {name}"))
    console.print(speed.speed_table(report))
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(report_path), json.dumps(report, indent=2) + "\n")
        console.print(f"report → {report_path}", markup=False)
    return report


def _describe_model(path: Path) -> str:
    """Path and content hash: a report must say exactly which model produced its numbers."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"
    return f"{path} (sha256 {digest})"


def _read(labelled, template: Template, predictor, cfg: Config, crops_dir: Path, console: Console) -> Run:
    with _progress(console) as progress:
        if isinstance(labelled, CropSet):
            task = progress.add_task("reading crops", total=len(labelled.items))
            return run_crop_set(labelled, predictor, cfg.review_threshold, lambda n: progress.update(task, completed=n))
        task = progress.add_task("reading forms", total=len(labelled.files))
        return run_form_set(labelled, template, predictor, cfg.pipeline(), crops_dir, cfg.workers,
                            on_file=lambda path, recs: progress.advance(task))


def _has_tesseract(console: Console) -> bool:
    if tesseract.available() is None:
        console.print("[yellow]tesseract or pytesseract is not installed: no baseline row[/]")
        return False
    return True


def _tesseract(run: Run, console: Console) -> Baseline:
    with console.status(f"tesseract on {len(run.items)} crops"):
        result = tesseract.read_crops([it.crop for it in run.items], [run.kinds[it.field] for it in run.items], workers=2)
    items = [replace(it, pred=normalize_prediction(text, run.kinds[it.field]), confidence=0.0)
             for it, text in zip(run.items, result.texts)]
    return Baseline("tesseract", result.version, items, result.seconds)


def _ppocr(run: Run, cfg: Config, console: Console) -> Baseline:
    """PP-OCRv5 alone on the same crops: its own greedy reading, through the same blank check
    and normalization as formreader's fields."""
    from formreader.benchmark.runner import read_crop
    from formreader.crops import read_crops
    from formreader.recognize.ppocr import DEFAULT_PATH, load_ppocr

    predictor = load_ppocr(cfg.recognizer())
    texts = [""] * len(run.items)
    start = time.perf_counter()
    with console.status(f"ppocr on {len(run.items)} crops"):
        for kind in sorted(set(run.kinds.values())):
            idx = [i for i, it in enumerate(run.items) if run.kinds[it.field] == kind and it.crop is not None]
            images = {i: read_crop(run.items[i].crop) for i in idx}
            idx = [i for i in idx if images[i] is not None]
            results, _ = read_crops([images[i] for i in idx], predictor, "raw")
            for i, result in zip(idx, results):
                texts[i] = result.text
    seconds = time.perf_counter() - start
    items = [replace(it, pred=normalize_prediction(text, run.kinds[it.field]), confidence=0.0)
             for it, text in zip(run.items, texts)]
    return Baseline("ppocr", f"PP-OCRv5 mobile rec ({DEFAULT_PATH.name}, cut to the field alphabet)", items, seconds)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
