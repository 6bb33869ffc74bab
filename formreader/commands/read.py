"""`formreader read`: a folder of single-field crops (no template) -> file,text,confidence,needs_review.

A crop needs review as a form's field does: its value is invalid for its kind, or its confidence
is below `review_threshold`, or the file could not be read."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from formreader.config import Config
from formreader.crops import read_crops
from formreader.errors import ConfigError, InputError
from formreader.ingest import IMAGE_SUFFIXES, discover, read_pages
from formreader.recognize.ensemble import load_reader
from formreader.recognize.grammar import KINDS
from formreader.writers import atomic_write_text, render_rows

CHUNK = 512  # crops decoded and read at a time: bounded memory on large folders


def run_read(inputs: list[Path], out: Path, cfg: Config, kind: str = "name", console: Console | None = None) -> int:
    """Read every crop; returns how many files could not be read (their rows carry the error)."""
    console = console or Console(stderr=True)
    if kind != "raw" and kind not in KINDS:
        raise ConfigError(f"unknown --kind {kind!r} (choose {', '.join(KINDS)} or raw)")
    files = [f for f in discover(inputs) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InputError(f"no crop images found in {', '.join(map(str, inputs))}")
    predictor = load_reader(cfg.model, cfg.recognizer())
    rows: list[dict[str, object]] = []
    start = time.perf_counter()
    with console.status("reading crops") as status:
        for i in range(0, len(files), CHUNK):
            rows.extend(_read_chunk(files[i : i + CHUNK], predictor, kind, cfg.review_threshold))
            status.update(f"reading crops: {len(rows)}/{len(files)}")
    seconds = time.perf_counter() - start
    # Same CSV rules as scan: formula-like cells neutralized, any file name round-trips.
    atomic_write_text(out, render_rows(rows, "csv", ["file", "text", "confidence", "needs_review", "error"]))
    failed = sum(1 for r in rows if r["error"])
    doubtful = sum(1 for r in rows if r["needs_review"] and not r["error"])
    console.print(f"{len(rows)} crops read in {seconds:.2f} s ({len(rows) / max(seconds, 1e-9):.0f} crops/s), "
                  f"{doubtful} need review (confidence < {cfg.review_threshold:g} or invalid), {failed} failed → {out}", markup=False)
    return failed


def _read_chunk(files: list[Path], predictor, kind: str, review_threshold: float) -> list[dict[str, object]]:
    images, rows = [], []
    for f in files:
        page = read_pages(f)[0]
        rows.append({"file": str(f), "text": "", "confidence": 0.0, "needs_review": True, "error": page.error})
        images.append(page.image)
    ok = [i for i, img in enumerate(images) if img is not None]
    results, _ = read_crops([images[i] for i in ok], predictor, kind)
    for i, result in zip(ok, results):
        rows[i]["text"], rows[i]["confidence"] = result.text, round(result.confidence, 4)
        rows[i]["needs_review"] = result.doubtful(review_threshold)
    return rows
