"""The scan pipeline: files -> pages -> aligned pages -> field crops -> readings -> records.

`prepare_file` is the per-file part (ingest, align, segment): a plain function of the file, the
template and settings, safe to run in worker threads or on other machines. `Scanner` batches the
crops of many pages and files through one recognizer call and turns readings into records.
`scan`, `watch` and `benchmark` all go through `Scanner`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from formreader.align import Aligner, AlignerSettings
from formreader.fields import make_field
from formreader.ingest import DEFAULT_MAX_PIXELS, read_pages
from formreader.recognize.ensemble import FieldReader, load_reader
from formreader.recognize.grammar import Grammar
from formreader.recognize.predictor import Predictor, Reading, RecognizerSettings
from formreader.records import FieldCrop, FieldResult, PageRecord, Timings
from formreader.segment import MARGIN_MM, cut_fields
from formreader.template import Template


@dataclass(frozen=True)
class PipelineSettings:
    dpi: float = 200.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    review_threshold: float = 0.995  # a field below this confidence sends the page to review (config.py says why)
    margin_mm: float = MARGIN_MM
    aligner: AlignerSettings = field(default_factory=AlignerSettings)


@dataclass
class PreparedPage:
    """A page after ingest, alignment and segmentation, waiting for the recognizer."""

    record: PageRecord
    crops: list[FieldCrop] = field(default_factory=list)


def prepare_file(path: Path, template: Template, settings: PipelineSettings, aligner: Aligner | None = None) -> list[PreparedPage]:
    aligner = aligner or Aligner(template, settings.aligner)
    t0 = time.perf_counter()
    pages = read_pages(Path(path), dpi=settings.dpi, max_pixels=settings.max_pixels)
    ingest_each = (time.perf_counter() - t0) / max(len(pages), 1)
    prepared = []
    for page in pages:
        record = PageRecord(file=page.file, page=page.page, error=page.error)
        record.timings.add("ingest", ingest_each)
        prepared.append(PreparedPage(record, _align_and_cut(page.image, template, aligner, settings, record)))
    return prepared


def _align_and_cut(image, template: Template, aligner: Aligner, settings: PipelineSettings, record: PageRecord) -> list[FieldCrop]:
    if image is None:
        return []
    t0 = time.perf_counter()
    result = aligner.align(image)
    t1 = time.perf_counter()
    record.timings.add("align", t1 - t0)
    record.alignment, record.aligned = result.score, result.ok
    if not result.ok:
        # Reading fields from a misregistered page would put wrong values in the right columns.
        record.error = f"page does not match template {template.name!r}: {result.note}"
        return []
    crops = cut_fields(result.image, template, settings.margin_mm)
    record.timings.add("segment", time.perf_counter() - t1)
    return crops


def finish_pages(pages: list[PreparedPage], predictor: Predictor | FieldReader, settings: PipelineSettings) -> list[PageRecord]:
    """Recognize every non-blank crop of these pages in one batched call, then build the records."""
    todo = [(p, c) for p in pages for c in p.crops if not c.blank]
    grammars = [Grammar(c.kind, c.choices) for _, c in todo]
    readings, timings = predictor.predict([c.image for _, c in todo], grammars) if todo else ([], Timings())
    by_crop = {id(c): r for (_, c), r in zip(todo, readings)}
    n_crops = max(len(todo), 1)
    for page in pages:
        share = sum(1 for c in page.crops if not c.blank) / n_crops
        for stage, sec in timings.seconds.items():
            page.record.timings.add(stage, sec * share)
        t0 = time.perf_counter()
        _fill_record(page, by_crop, settings)
        page.record.timings.add("decode", time.perf_counter() - t0)
    return [p.record for p in pages]


def _fill_record(page: PreparedPage, by_crop: dict[int, Reading], settings: PipelineSettings) -> None:
    record = page.record
    for crop in page.crops:
        if crop.blank:
            record.fields[crop.name] = FieldResult(crop.name, "", "", float(crop.blank_confidence))
        else:
            reading = by_crop[id(crop)]
            record.fields[crop.name] = make_field(crop.name, crop.kind, reading.text, reading.confidence,
                                                  reading.raw, reading.alternatives)
    doubtful = [
        f for f in record.fields.values() if not f.valid or f.confidence < settings.review_threshold
    ]
    record.needs_review = bool(record.error) or not record.aligned or bool(doubtful)


class Scanner:
    """Reads many files with one recognizer, batching crops across pages and files."""

    def __init__(
        self,
        template: Template,
        predictor: Predictor | FieldReader,
        settings: PipelineSettings = PipelineSettings(),
        crops_dir: Path | None = None,
        workers: int = 2,
    ):
        self.template = template
        self.predictor = predictor
        self.settings = settings
        self.crops_dir = Path(crops_dir) if crops_dir else None
        self.workers = max(1, workers)
        self.aligner = Aligner(template, settings.aligner)

    def scan(self, files: Iterable[Path], on_file: Callable[[Path, list[PageRecord]], None] | None = None) -> Iterator[PageRecord]:
        """Yield records file by file, in input order; `on_file` is called as each file completes."""
        pending: list[tuple[Path, list[PreparedPage]]] = []
        for item in self._prepared(files):
            pending.append(item)
            if sum(len(p.crops) for _, pages in pending for p in pages) >= self.predictor.batch_size:
                yield from self._flush(pending, on_file)
                pending = []
        yield from self._flush(pending, on_file)

    def _prepared(self, files: Iterable[Path]) -> Iterator[tuple[Path, list[PreparedPage]]]:
        """prepare_file over the files in worker threads, in order, a bounded window ahead.

        OpenCV and poppler release the GIL, so threads overlap page work with recognition; the
        window keeps memory flat on folders of any size.
        """
        window: deque = deque()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for f in files:
                window.append((Path(f), pool.submit(prepare_file, f, self.template, self.settings, self.aligner)))
                if len(window) > 2 * self.workers:
                    path, future = window.popleft()
                    yield path, future.result()
            while window:
                path, future = window.popleft()
                yield path, future.result()

    def _flush(self, pending, on_file) -> Iterator[PageRecord]:
        pages = [p for _, file_pages in pending for p in file_pages]
        finish_pages(pages, self.predictor, self.settings)
        if self.crops_dir is not None:
            save_crops(pages, self.crops_dir)
        for path, file_pages in pending:
            records = [p.record for p in file_pages]
            if on_file is not None:
                on_file(path, records)
            yield from records


def crop_path(directory: Path, file: str, page: int, name: str) -> Path:
    """Where the crop of field `name` on `page` of `file` (the row's `file` value) is saved.

    The stem keeps names readable; the hash of the whole path keeps two `scan.pdf` in different
    folders apart. Review, apply, fine-tuning and the benchmark all find crops through this.
    """
    stem = re.sub(r"[^\w.-]+", "_", Path(file).stem)[:60]
    digest = hashlib.sha1(str(file).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return Path(directory) / f"{stem}_{digest}_p{page}_{name}.png"


def save_crops(pages: list[PreparedPage], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for page in pages:
        for crop in page.crops:
            cv2.imwrite(str(crop_path(directory, page.record.file, page.record.page, crop.name)), crop.image)


def process_file(
    path: Path,
    template_dir: Path | None = None,
    model_path: Path | None = None,
    settings: PipelineSettings = PipelineSettings(),
    recognizer: RecognizerSettings = RecognizerSettings(),
) -> list[PageRecord]:
    """One file in, its records out: the unit of work that can be mapped across machines."""
    template = Template.load(template_dir)
    scanner = Scanner(template, load_reader(model_path, recognizer), settings, workers=1)
    return list(scanner.scan([path]))
