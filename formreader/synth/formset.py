"""Write a labelled form set: scanned-looking files (PDF, JPEG, PNG, TIFF) plus `truth.csv`.

`truth.csv` has FILE (relative to the set folder), PAGE (1-based), then one column per template
field; an empty cell is a blank field and dates are ISO. `set.json` records how the set was made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from formreader.errors import ConfigError
from formreader.synth.forms import FormFiller
from formreader.synth.scan import ScanPreset, draw_params, jpeg_roundtrip, simulate_scan
from formreader.writers import atomic_write_text

FORMATS = ("pdf", "jpg", "png", "tif")
TRUTH_FILE = "truth.csv"
PDF_DATE = time.strptime("2026-01-01", "%Y-%m-%d")  # Pillow writes struct_time dates


@dataclass(frozen=True)
class SetSpec:
    pages: int
    preset: ScanPreset
    formats: tuple[str, ...] = FORMATS
    max_pdf_pages: int = 3
    seed: int = 0
    prefix: str = "form"
    dpi: float | None = None  # force one scan resolution (small committed samples); None: the preset's range

    def check(self) -> None:
        if self.pages < 1:
            raise ConfigError("a form set needs at least one page")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ConfigError(f"unknown format(s) {bad} (choose from {', '.join(FORMATS)})")
        if not 1 <= self.max_pdf_pages <= 20:
            raise ConfigError("--max-pdf-pages must be between 1 and 20")
        if self.dpi is not None and not 75 <= self.dpi <= 600:
            raise ConfigError("--dpi must be between 75 and 600")


@dataclass
class SetSummary:
    folder: Path
    files: list[Path] = field(default_factory=list)
    pages: int = 0
    truth: Path | None = None


def plan_files(spec: SetSpec, rng: np.random.Generator) -> list[tuple[str, int]]:
    """(format, page count) per file: formats in turn, so every format is present in a small set."""
    plan, left, i = [], spec.pages, 0
    while left > 0:
        fmt = spec.formats[i % len(spec.formats)]
        count = min(left, int(rng.integers(1, spec.max_pdf_pages + 1))) if fmt == "pdf" else 1
        plan.append((fmt, count))
        left -= count
        i += 1
    return plan


def write_form_set(
    folder: Path,
    filler: FormFiller,
    spec: SetSpec,
    on_page: Callable[[int], None] | None = None,
    provenance: dict | None = None,
) -> SetSummary:
    spec.check()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    summary = SetSummary(folder)
    rows: list[dict[str, object]] = []
    fields = filler.template.layout.field_names
    plan = plan_files(spec, rng)
    width = max(4, len(str(len(plan))))
    for number, (fmt, count) in enumerate(plan, start=1):
        name = f"{spec.prefix}_{number:0{width}d}.{fmt}"
        scans, quality, dpi = [], 90, 200.0
        for page_no in range(1, count + 1):
            form = filler.fill(rng)
            params = draw_params(spec.preset, rng)
            if spec.dpi:
                params = replace(params, dpi=float(spec.dpi))
            scans.append(simulate_scan(form.image, params, filler.template.dpi, rng))
            quality, dpi = params.quality, params.dpi  # one scanner setting per file
            rows.append({"FILE": name, "PAGE": page_no, **{f: form.truth.get(f, "") for f in fields}})
            summary.pages += 1
            if on_page:
                on_page(summary.pages)
        save_scans(folder / name, scans, quality, dpi)
        summary.files.append(folder / name)
    summary.truth = folder / TRUTH_FILE
    table = pd.DataFrame(rows, columns=["FILE", "PAGE", *fields])
    atomic_write_text(summary.truth, table.to_csv(index=False))
    meta = {"pages": summary.pages, "files": len(summary.files), "spec": _spec_dict(spec), **(provenance or {})}
    atomic_write_text(folder / "set.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return summary


def save_scans(path: Path, scans: list[np.ndarray], quality: int, dpi: float) -> None:
    """One file per scan job. JPEG and PDF carry the scanner's JPEG compression themselves; PNG
    and TIFF are lossless containers of an image that was already JPEG-compressed once."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt in ("png", "tif"):
        scans = [jpeg_roundtrip(s, quality) for s in scans]
    images = [Image.fromarray(s, mode="L") for s in scans]
    if fmt == "pdf":
        # A fixed date keeps regenerated sets byte-identical (Pillow stamps the current time).
        images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=dpi, quality=quality,
                       creationDate=PDF_DATE, modDate=PDF_DATE, producer="formreader synth")
    elif fmt == "jpg":
        images[0].save(path, "JPEG", quality=quality, dpi=(dpi, dpi))
    elif fmt == "png":
        images[0].save(path, "PNG", optimize=True, dpi=(dpi, dpi))
    else:
        images[0].save(path, "TIFF", save_all=True, append_images=images[1:], compression="tiff_adobe_deflate", dpi=(dpi, dpi))


def _spec_dict(spec: SetSpec) -> dict:
    out = asdict(spec)
    out["preset"] = spec.preset.name
    out["formats"] = list(spec.formats)
    return out
