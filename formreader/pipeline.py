"""The scan pipeline: files -> pages -> aligned pages -> field crops -> readings -> records.

`prepare_file` is the per-file part (ingest, align, segment): a plain function of the file, the
template and settings (and optionally a page range), safe to run in worker threads or on other
machines; pages stream through it one at a time. `Scanner` batches the
crops of many pages and files through one recognizer call and turns readings into records.
`scan`, `watch` and `benchmark` all go through `Scanner`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from formreader.align import Aligner, AlignerSettings
from formreader.fields import make_field
from formreader.ingest import DEFAULT_MAX_PIXELS, iter_pages, page_count
from formreader.recognize.ensemble import FieldReader, load_reader
from formreader.recognize.grammar import Grammar
from formreader.recognize.predictor import Predictor, Reading, RecognizerSettings
from formreader.records import FieldCrop, FieldResult, Page, PageRecord, Timings
from formreader.segment import MARGIN_MM, cut_fields
from formreader.template import Template

log = logging.getLogger("formreader.pipeline")
RECOGNIZERS = 2  # batches recognized at once (threads): see Scanner.scan
PAGES_PER_TASK = 2  # pages of one file per unit of work: big files spread over the workers, memory stays flat


@dataclass(frozen=True)
class PipelineSettings:
    dpi: float = 200.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    # A field below this confidence sends the page to review. 0.995: the lowest confidence at which
    # the kept pages of 100 hard synthetic forms are 98% fully right (0.9954, second opinion on;
    # `formreader benchmark` prints it as "98% right": re-run after changing a model). Dev val
    # crops would need 0.9988, which keeps no hard page at all. MODEL.md ("Auto-accept") has the curves.
    review_threshold: float = 0.995
    margin_mm: float = MARGIN_MM
    aligner: AlignerSettings = field(default_factory=AlignerSettings)


@dataclass
class PreparedPage:
    """A page after ingest, alignment and segmentation, waiting for the recognizer."""

    record: PageRecord
    crops: list[FieldCrop] = field(default_factory=list)


def prepare_file(path: Path, template: Template, settings: PipelineSettings, aligner: Aligner | None = None,
                 first: int = 1, last: int | None = None) -> list[PreparedPage]:
    """Pages `first`..`last` (None: to the end) of one file, aligned and cut: the per-file unit of
    work, a plain function of (file, template, settings) that threads, processes or Ray can map
    over files or over page ranges of one file."""
    return list(prepare_pages(path, template, settings, aligner, first, last))


def prepare_pages(path: Path, template: Template, settings: PipelineSettings, aligner: Aligner | None = None,
                  first: int = 1, last: int | None = None) -> Iterator[PreparedPage]:
    """Like `prepare_file`, lazily: one page image in memory at a time (it is dropped once cut).

    Never raises: a page that breaks ingest, alignment or segmentation becomes a page with an
    error, so one bad page never stops a batch, and a file always gives at least one row.
    """
    aligner = aligner or Aligner(template, settings.aligner)
    pages = iter_pages(Path(path), dpi=settings.dpi, max_pixels=settings.max_pixels, first=first, last=last)
    number = first - 1
    while True:
        t0 = time.perf_counter()
        try:
            page = next(pages, None)
        except Exception as exc:  # a decoder bug on one file must not stop the batch
            log.exception("%s: reading page %d raised", path, number + 1)
            page = Page(str(path), number + 1, None, error=f"cannot read page ({type(exc).__name__}: {exc})")
            pages = iter(())
        if page is None:
            break
        number = page.page
        record = PageRecord(file=page.file, page=page.page, error=page.error)
        record.timings.add("ingest", time.perf_counter() - t0)
        yield PreparedPage(record, _align_and_cut_safely(page.image, template, aligner, settings, record))
    if number < first and first == 1:
        yield PreparedPage(PageRecord(file=str(path), page=1, error="no page could be read from this file"))


def _align_and_cut_safely(image, template: Template, aligner: Aligner, settings: PipelineSettings, record: PageRecord) -> list[FieldCrop]:
    try:
        return _align_and_cut(image, template, aligner, settings, record)
    except Exception as exc:  # e.g. OpenCV on a degenerate page; the row says so
        log.exception("%s page %d: alignment or segmentation raised", record.file, record.page)
        record.error = f"cannot process page ({type(exc).__name__}: {exc})"
        return []


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
    crops = cut_fields(result, template, settings.margin_mm)
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
    doubtful = any(f.doubtful(settings.review_threshold) for f in record.fields.values())
    record.needs_review = bool(record.error) or not record.aligned or doubtful


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

    def scan(
        self,
        files: Iterable[Path],
        on_file: Callable[[Path, list[PageRecord]], None] | None = None,
        on_open: Callable[[Path, int], None] | None = None,
        on_page: Callable[[PageRecord], None] | None = None,
    ) -> Iterator[PageRecord]:
        """Yield records page by page, in input order.

        `on_open(path, pages)` is called when a file's page count is known (before its pages are
        read), `on_page(record)` as each page is finished, `on_file(path, records)` as each file
        is complete (all its pages finished, crops saved).
        """
        pending: list[_Chunk] = []
        file_records: list[PageRecord] = []  # finished pages of the file in progress
        in_flight: deque[tuple[list[_Chunk], Future]] = deque()
        # Batches are recognized in RECOGNIZERS threads, handed out in order: one batch's models
        # run (onnxruntime frees the GIL) while another's candidates are scored in Python.
        with ThreadPoolExecutor(max_workers=RECOGNIZERS, thread_name_prefix="recognize") as pool:
            for chunk in self._prepared(files, on_open):
                pending.append(chunk)
                # Pages without crops (errors, other forms) count too: what waits here stays bounded.
                if sum(max(len(p.crops), 1) for c in pending for p in c.pages) >= self.predictor.batch_size:
                    in_flight.append((pending, pool.submit(self._finish, pending)))
                    pending = []
                    if len(in_flight) >= RECOGNIZERS:
                        yield from self._deliver(*in_flight.popleft(), file_records, on_file, on_page)
            if pending:
                in_flight.append((pending, pool.submit(self._finish, pending)))
            while in_flight:
                yield from self._deliver(*in_flight.popleft(), file_records, on_file, on_page)

    def _prepared(self, files: Iterable[Path], on_open) -> Iterator[_Chunk]:
        """prepare_file over page ranges of the files in worker threads, in order, a bounded
        number of ranges ahead.

        A big file is split into ranges of PAGES_PER_TASK pages, so its pages spread over the
        workers and only about 2 x workers x PAGES_PER_TASK pages are in flight, whatever the size
        of the files or of the folder. OpenCV and poppler release the GIL, so threads overlap page
        work with recognition.
        """
        window: deque[tuple[_Chunk, Future]] = deque()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for f in files:
                path = Path(f)
                count = page_count(path)
                if on_open is not None:
                    on_open(path, count)
                for first in range(1, count + 1, PAGES_PER_TASK):
                    final = first + PAGES_PER_TASK > count
                    # The final range reads to the end: a count that fell short loses no page.
                    last = None if final else first + PAGES_PER_TASK - 1
                    future = pool.submit(prepare_file, path, self.template, self.settings, self.aligner, first, last)
                    window.append((_Chunk(path, final), future))
                    if len(window) > 2 * self.workers:
                        yield _harvest(*window.popleft())
            while window:
                yield _harvest(*window.popleft())

    def _finish(self, pending: list[_Chunk]) -> None:
        pages = [p for c in pending for p in c.pages]
        finish_pages(pages, self.predictor, self.settings)
        if self.crops_dir is not None:
            save_crops(pages, self.crops_dir)

    def _deliver(self, pending: list[_Chunk], finished: Future, file_records: list[PageRecord], on_file, on_page
                 ) -> Iterator[PageRecord]:
        """A recognized batch's records, in input order, with the callbacks scan promises."""
        finished.result()
        for chunk in pending:
            for page in chunk.pages:
                file_records.append(page.record)
                if on_page is not None:
                    on_page(page.record)
                yield page.record
            if chunk.final:
                if on_file is not None:
                    on_file(chunk.path, list(file_records))
                file_records.clear()


@dataclass
class _Chunk:
    """A page range of one file, prepared; `final` when it is the file's last range."""

    path: Path
    final: bool
    pages: list[PreparedPage] = field(default_factory=list)


def _harvest(chunk: _Chunk, future: Future) -> _Chunk:
    chunk.pages = future.result()
    return chunk


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
