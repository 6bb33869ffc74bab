"""Run the scan pipeline over a labelled set and pair every reading with its truth.

Form sets go through `formreader.pipeline.Scanner`, exactly as `formreader scan` does; crop sets go
straight to the Predictor. The crops the recognizer saw are saved (by the Scanner) so the error
page and the Tesseract baseline look at the very same pixels.
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from formreader.benchmark.metrics import Item
from formreader.benchmark.sets import (
    CROP_FIELD,
    CropSet,
    FormSet,
    normalize_prediction,
    normalize_truth,
)
from formreader.crops import read_crops
from formreader.pipeline import PipelineSettings, Scanner, crop_path
from formreader.recognize.predictor import Predictor
from formreader.records import PageRecord, Timings
from formreader.template import Template

CROP_CHUNK = 512  # crops read and recognized at a time: bounded memory on large crop sets


@dataclass
class Run:
    kind: str  # "forms" or "crops"
    items: list[Item]
    fields: list[str]
    kinds: dict[str, str]  # field -> "text" | "date"
    pages: int
    crops: int  # field crops read (blank ones included: the pipeline decides they are blank)
    seconds: float  # wall time of the whole read
    timings: Timings = field(default_factory=Timings)
    peak_rss_mb: float = 0.0
    failed_pages: int = 0
    misaligned: list[str] = field(default_factory=list)
    alignment_scores: list[float] = field(default_factory=list)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_form_set(
    form_set: FormSet,
    template: Template,
    predictor: Predictor,
    settings: PipelineSettings,
    crops_dir: Path,
    workers: int = 2,
    on_file: Callable[[Path, list[PageRecord]], None] | None = None,
) -> Run:
    scanner = Scanner(template, predictor, settings, crops_dir=crops_dir, workers=workers)
    start = time.perf_counter()
    records = list(scanner.scan(form_set.files, on_file=on_file))
    seconds = time.perf_counter() - start
    kinds = {f.name: f.kind for f in template.layout.fields}
    by_key = {(Path(r.file).resolve().relative_to(form_set.root.resolve()).as_posix(), r.page): r for r in records}
    # Throughput counts every page read, also pages of a listed file that truth.csv does not score.
    run = Run("forms", [], form_set.fields, {f: kinds[f] for f in form_set.fields}, len(records), 0, seconds)
    for record in records:
        run.timings.merge(record.timings)
        run.crops += len(record.fields)
        run.failed_pages += bool(record.error)
        run.alignment_scores.append(record.alignment)
        if not record.aligned:
            run.misaligned.append(f"{Path(record.file).name}#{record.page}")
    clashing = _clashing_stems(form_set.files)
    for (file, page), truth in form_set.truth.items():
        crops = None if Path(file).stem in clashing else crops_dir
        run.items.extend(_page_items(file, page, truth, by_key.get((file, page)), run.kinds, crops))
    run.peak_rss_mb = peak_rss_mb()
    return run


def _clashing_stems(files: list[Path]) -> set[str]:
    """Stems shared by several files (a.pdf, a.jpg): their saved crops overwrite each other, so
    no crop image can be trusted for them (the error page shows none, baselines read none)."""
    counts = Counter(f.stem for f in files)
    return {stem for stem, n in counts.items() if n > 1}


def _page_items(file: str, page: int, truth: dict[str, str], record: PageRecord | None, kinds: dict[str, str], crops_dir: Path | None) -> list[Item]:
    """A page's fields as scored items; a page the pipeline lost or failed reads as all blank."""
    key = f"{file}#{page}"
    items = []
    for name, raw_truth in truth.items():
        result = record.fields.get(name) if record else None
        pred = normalize_prediction(result.text, kinds[name]) if result else ""
        items.append(Item(
            source=key,
            field=name,
            truth=normalize_truth(raw_truth, kinds[name]),
            pred=pred,
            confidence=result.confidence if result else 0.0,
            needs_review=record.needs_review if record else True,
            crop=crop_path(crops_dir, record.file, page, name) if result and crops_dir else None,
            page_key=key,
        ))
    return items


def read_crop(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def run_crop_set(crop_set: CropSet, predictor: Predictor, review_threshold: float, on_chunk: Callable[[int], None] | None = None) -> Run:
    run = Run("crops", [], [CROP_FIELD], {CROP_FIELD: "name"}, 0, 0, 0.0)
    start = time.perf_counter()
    for i in range(0, len(crop_set.items), CROP_CHUNK):
        chunk = crop_set.items[i : i + CROP_CHUNK]
        t0 = time.perf_counter()
        images = [read_crop(c.path) for c in chunk]
        run.timings.add("ingest", time.perf_counter() - t0)
        ok = [j for j, img in enumerate(images) if img is not None]
        results, timings = read_crops([images[j] for j in ok], predictor, "name", CROP_FIELD)
        run.timings.merge(timings)
        by_index = dict(zip(ok, results))
        for j, crop in enumerate(chunk):
            result = by_index.get(j)
            run.items.append(Item(
                source=crop.path.name,
                field=CROP_FIELD,
                truth=normalize_truth(crop.truth, "text"),
                pred=result.text if result else "",
                confidence=result.confidence if result else 0.0,
                needs_review=result is None or result.doubtful(review_threshold),
                crop=crop.path,
                page_key=crop.path.name,
            ))
        run.crops += len(chunk)
        if on_chunk:
            on_chunk(run.crops)
    run.seconds = time.perf_counter() - start
    run.peak_rss_mb = peak_rss_mb()
    return run
