"""Input files -> gray page images, one page at a time. A page that cannot be read becomes a Page
with an error; nothing here raises on a bad file.

Pages stream: `iter_pages` decodes one page (or a few PDF pages per poppler call) at a time, so a
300-page PDF or a 500-frame TIFF never sits in memory whole, and `page_count` lets a caller split a
file into page ranges without decoding it. The pixel limit is checked for every page and frame
before it is rendered or decoded, so one oversized page is one error row and its neighbours are read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from formreader.errors import first_line
from formreader.pdf_scans import open_pdf, scanned_page
from formreader.records import Page

log = logging.getLogger("formreader.ingest")
_LIBTIFF_SEEK = threading.Lock()

PDF_SUFFIXES = {".pdf"}
MULTI_PAGE_SUFFIXES = {".tif", ".tiff"}  # every frame is a page; other formats give their first frame
JPEG2000_SUFFIXES = {".jp2", ".j2k", ".jpf", ".jpx"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".pnm", ".pgm", ".ppm", ".pbm"} | JPEG2000_SUFFIXES
SUPPORTED_SUFFIXES = PDF_SUFFIXES | IMAGE_SUFFIXES
DEFAULT_MAX_PIXELS = 60_000_000  # ~A3 at 600 dpi; anything larger is refused, not decoded
PDF_CHUNK = 1  # pages per poppler call: one page image in memory at a time (a call costs ~10 ms)
PDFINFO_TIMEOUT_S = 30  # poppler on a hostile file must not hang the batch
RENDER_TIMEOUT_S = 120  # per poppler call (PDF_CHUNK pages)
LAST_PAGE_ANY = 10**9  # "to the end" for pdfinfo's page range


def discover(inputs: list[Path]) -> list[Path]:
    """Files to read: given files as they are, folders searched recursively for supported types."""
    found: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found.extend(
                p for p in sorted(item.rglob("*")) if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
            )
        else:
            found.append(item)
    return found


def _error(path: Path, page: int, message: str) -> Page:
    return Page(file=str(path), page=page, image=None, error=message)


def _precheck(path: Path) -> str:
    """Why the file cannot be read at all, or ""."""
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a regular file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return f"unsupported file type {suffix or '(none)'}"
    if suffix in JPEG2000_SUFFIXES and not features.check("jpg_2000"):
        return "JPEG 2000 is not supported by this Pillow build (no OpenJPEG)"
    return ""


def page_count(path: Path) -> int:
    """How many pages `iter_pages` will yield for this file, without decoding any (1 for a file
    that cannot be read: its single row carries the error)."""
    path = Path(path)
    if _precheck(path):
        return 1
    try:
        if path.suffix.lower() in PDF_SUFFIXES:
            return max(1, _pdfinfo(path)[0])
        if path.suffix.lower() in MULTI_PAGE_SUFFIXES:
            with Image.open(path) as img:
                return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:  # the read itself reports the cause on the file's row
        return 1
    return 1


def read_pages(path: Path, dpi: float = 200.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Page]:
    """Every page of a file at once: for small files (a template's blank, a crop)."""
    return list(iter_pages(path, dpi, max_pixels))


def iter_pages(path: Path, dpi: float = 200.0, max_pixels: int = DEFAULT_MAX_PIXELS,
               first: int = 1, last: int | None = None) -> Iterator[Page]:
    """Pages `first`..`last` (1-based, inclusive; None: to the end) of a PDF, TIFF or image file,
    gray uint8, one at a time. Errors are yielded as pages, never raised."""
    path = Path(path)
    problem = _precheck(path)
    if problem:
        if first == 1:
            yield _error(path, 1, problem)
        return
    if path.suffix.lower() in PDF_SUFFIXES:
        yield from _pdf_pages(path, dpi, max_pixels, first, last)
    else:
        yield from _image_pages(path, max_pixels, first, last)


# --- PDF ---------------------------------------------------------------------------------

def _pdfinfo(path: Path, first: int | None = None, last: int | None = None) -> tuple[int, dict]:
    from pdf2image import pdfinfo_from_path

    info = pdfinfo_from_path(str(path), timeout=PDFINFO_TIMEOUT_S, first_page=first, last_page=last)
    return int(info["Pages"]), info


def _pdf_pages(path: Path, dpi: float, max_pixels: int, first: int, last: int | None) -> Iterator[Page]:
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFPopplerTimeoutError, PDFSyntaxError

    try:
        # One pdfinfo call gives the page count and the sizes of the range (poppler clamps the
        # range's end to the last page; a range past the end is an error, handled below).
        count, info = _pdfinfo(path, first, last or LAST_PAGE_ANY)
        last = count if last is None else min(last, count)
        if count < 1:
            if first == 1:
                yield _error(path, 1, "PDF has no pages")
            return
        if first > last:
            return
    except PDFInfoNotInstalledError:
        yield _error(path, first, "cannot read PDF: poppler (pdfinfo/pdftoppm) is not installed")
        return
    except PDFPopplerTimeoutError:
        yield _error(path, first, f"unreadable PDF (pdfinfo took over {PDFINFO_TIMEOUT_S} s)")
        return
    except (PDFPageCountError, PDFSyntaxError, KeyError, ValueError, OSError) as exc:
        if first == 1:
            if "password" in str(exc).lower():
                yield _error(path, 1, "encrypted PDF (password required)")
            else:
                yield _error(path, 1, f"unreadable PDF ({first_line(exc)})")
        return
    # A scanned page's own JPEG is decoded as it is (`pdf_scans`); other pages are rendered in
    # runs that fit the pixel limit; an oversized page is an error row in its place.
    pdf = open_pdf(path)
    try:
        run: list[int] = []
        for n in range(first, last + 1):
            too_big = _pdf_page_too_big(info, n, dpi, max_pixels)
            scan = None if too_big or pdf is None else scanned_page(pdf, n, dpi)
            if too_big or scan is not None:
                yield from _render_pdf_run(path, dpi, run)
                run = []
                yield _error(path, n, too_big) if too_big else Page(str(path), n, scan)
                continue
            run.append(n)
            if len(run) == PDF_CHUNK:
                yield from _render_pdf_run(path, dpi, run)
                run = []
        yield from _render_pdf_run(path, dpi, run)
    finally:
        if pdf is not None:
            pdf.close()


def _pdf_page_too_big(info: dict, n: int, dpi: float, max_pixels: int) -> str:
    """Why page n cannot be rendered at this dpi ("" when it can), from pdfinfo's page size
    (the crop box, which is what we render)."""
    size = info.get(f"Page {n:4d} size") or (info.get("Page size") if n == 1 else None)
    if not size:
        return "" if info.get("Pages", 0) == 1 else f"page size unknown (pdfinfo gave none for page {n})"
    try:
        w_pt, h_pt = (float(v) for v in str(size).split()[0:3:2])
    except ValueError:
        return f"page size unreadable ({size!r})"
    pixels = w_pt * h_pt * (dpi / 72.0) ** 2
    if not pixels <= max_pixels:  # also refuses nan
        w_mm, h_mm = w_pt * 25.4 / 72, h_pt * 25.4 / 72
        return f"page too large: {w_mm:.0f} x {h_mm:.0f} mm at {dpi:g} dpi is over {max_pixels} pixels"
    return ""


def _render_pdf_run(path: Path, dpi: float, numbers: list[int]) -> Iterator[Page]:
    """Consecutive pages in one poppler call; page by page if that fails, to isolate a bad page."""
    if not numbers:
        return
    from pdf2image import convert_from_path

    first, last = numbers[0], numbers[-1]
    try:
        # Grayscale rendering: several times faster than colour. The crop box is the visible page,
        # and the size we checked against max_pixels.
        images = convert_from_path(str(path), dpi=dpi, grayscale=True, first_page=first, last_page=last,
                                   use_cropbox=True, timeout=RENDER_TIMEOUT_S)
        if len(images) == len(numbers):
            for n, img in zip(numbers, images):
                yield Page(str(path), n, np.asarray(img.convert("L")))
            return
    except Exception:  # poppler reports damage in many ways; retry page by page below
        pass
    if first == last:
        yield _error(path, first, "cannot render page (damaged PDF page)")
        return
    for n in numbers:
        yield from _render_pdf_run(path, dpi, [n])


# --- images ------------------------------------------------------------------------------

def _image_pages(path: Path, max_pixels: int, first: int, last: int | None) -> Iterator[Page]:
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        if first == 1:
            yield _error(path, 1, "not an image (unrecognized format)")
        return
    except Image.DecompressionBombError as exc:
        if first == 1:
            yield _error(path, 1, f"image too large ({first_line(exc)})")
        return
    except Exception as exc:  # Pillow raises many types on damaged headers
        if first == 1:
            yield _error(path, 1, f"damaged image ({first_line(exc)})")
        return
    with img:
        # Frames are reached by seeking, never counted here: counting walks every frame's
        # directory, for each page range of a 500-frame TIFF.
        multi = path.suffix.lower() in MULTI_PAGE_SUFFIXES
        n = first
        while (last is None or n <= last) and (multi or n == 1):
            if img.tell() != n - 1:
                try:
                    img.seek(n - 1)
                except EOFError:
                    return  # past the last frame
                except Exception as exc:  # a damaged directory: later frames are out of reach
                    yield _error(path, n, f"damaged image ({first_line(exc)})")
                    return
            yield _image_frame(img, path, n, max_pixels)
            n += 1


def _image_frame(img: Image.Image, path: Path, n: int, max_pixels: int) -> Page:
    """The current frame, page n: its size is checked before a single pixel is decoded."""
    try:
        w, h = img.size
        if w * h > max_pixels:
            return _error(path, n, f"image too large ({w}x{h}, over {max_pixels} pixels)")
        if n > 1 and img.format == "TIFF":
            # libtiff maps the whole file and walks every frame's directory to reach frame n: one
            # such decode at a time keeps that mapping (the file's size) from being held per thread.
            with _LIBTIFF_SEEK:
                img.load()
        else:
            if img.format == "JPEG" and img.mode == "RGB":
                img.draft("L", img.size)  # libjpeg hands out its luma plane: the same gray, 2x faster
            img.load()
        return Page(str(path), n, to_gray(img))
    except Exception as exc:  # one damaged frame is one error row
        return _error(path, n, f"damaged image ({first_line(exc)})")


def to_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> gray uint8 as a scanner operator would see it on paper: EXIF orientation
    applied, transparency flattened on white, 16/32-bit and float scaled to 8 bits, CMYK and
    palettes converted."""
    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: only then a (costly) transposed copy
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _scale_to_8bit(np.asarray(img), mode)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"))
    try:
        return np.asarray(img.convert("L"))
    except ValueError:  # modes Pillow cannot take to L directly (LAB, HSV)
        return np.asarray(img.convert("RGB").convert("L"))


def _scale_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit gray uses the full 0..65535 range (scanners write it so); 32-bit int and float are
    taken as 0..1 floats, 0..255 or 0..65535 by their largest value, else stretched min..max."""
    arr = arr.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    top = float(finite.max()) if finite.size else 0.0
    low = float(finite.min()) if finite.size else 0.0
    if mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif mode == "F" and low >= 0.0 and top <= 1.0:
        scale, offset = 255.0, 0.0
    elif low >= 0.0 and top <= 255.0:
        scale, offset = 1.0, 0.0
    elif low >= 0.0 and top <= 65535.0:
        scale, offset = 255.0 / 65535.0, 0.0
    else:
        scale, offset = 255.0 / max(top - low, 1e-12), low
    out = np.nan_to_num((arr - offset) * scale, nan=255.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
