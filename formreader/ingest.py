"""Input files -> gray page images. A file that cannot be read becomes a Page with an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from formreader.records import Page

PDF_SUFFIXES = {".pdf"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
SUPPORTED_SUFFIXES = PDF_SUFFIXES | IMAGE_SUFFIXES
DEFAULT_MAX_PIXELS = 60_000_000  # ~A3 at 600 dpi; anything larger is refused, not decoded
PDF_CHUNK = 8  # pages rendered per poppler call: fewer process starts, bounded memory


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


def _error_page(path: Path, message: str) -> list[Page]:
    return [Page(file=str(path), page=1, image=None, error=message)]


def read_pages(path: Path, dpi: float = 200.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Page]:
    """Every page of a PDF, TIFF or image file, gray uint8; errors are returned, never raised."""
    path = Path(path)
    if not path.exists():
        return _error_page(path, "file not found")
    if path.stat().st_size == 0:
        return _error_page(path, "empty file (0 bytes)")
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return _read_pdf(path, dpi, max_pixels)
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path, max_pixels)
    return _error_page(path, f"unsupported file type {suffix or '(none)'}")


def _read_pdf(path: Path, dpi: float, max_pixels: int) -> list[Page]:
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError

    try:
        info = pdfinfo_from_path(str(path))
        count = int(info["Pages"])
        if str(info.get("Encrypted", "no")).lower().startswith("yes"):
            return _error_page(path, "encrypted PDF")
        width_pt, height_pt = (float(v) for v in str(info.get("Page size", "0 x 0")).split()[0:3:2])
    except PDFInfoNotInstalledError:
        return _error_page(path, "cannot read PDF: poppler (pdfinfo/pdftoppm) is not installed")
    except (PDFPageCountError, PDFSyntaxError, KeyError, ValueError) as exc:
        if "password" in str(exc).lower():
            return _error_page(path, "encrypted PDF (password required)")
        return _error_page(path, f"unreadable PDF ({_first_line(exc)})")
    if width_pt * height_pt * (dpi / 72.0) ** 2 > max_pixels:
        return _error_page(path, f"page too large at {dpi:g} dpi (over {max_pixels} pixels)")
    pages: list[Page] = []
    for first in range(1, count + 1, PDF_CHUNK):
        pages.extend(_render_pdf_pages(path, dpi, first, min(first + PDF_CHUNK - 1, count)))
    return pages or _error_page(path, "PDF has no pages")


def _render_pdf_pages(path: Path, dpi: float, first: int, last: int) -> list[Page]:
    """Pages first..last in one poppler call; page by page if that fails, to isolate a bad page."""
    from pdf2image import convert_from_path

    try:
        # Grayscale rendering: several times faster than colour.
        images = convert_from_path(str(path), dpi=dpi, grayscale=True, first_page=first, last_page=last)
        if len(images) == last - first + 1:
            return [Page(str(path), n, np.asarray(img.convert("L"))) for n, img in enumerate(images, start=first)]
    except Exception:  # poppler reports damage in many ways; retry page by page below
        pass
    if first == last:
        return [Page(str(path), first, None, error="cannot render page (damaged PDF page)")]
    return [p for n in range(first, last + 1) for p in _render_pdf_pages(path, dpi, n, n)]


def _read_image(path: Path, max_pixels: int) -> list[Page]:
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                return _error_page(path, f"image too large ({img.width}x{img.height}, over {max_pixels} pixels)")
            return [
                Page(file=str(path), page=i, image=np.asarray(frame.convert("L")))
                for i, frame in enumerate(ImageSequence.Iterator(img), start=1)
            ]
    except UnidentifiedImageError:
        return _error_page(path, "not an image (unrecognized format)")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return _error_page(path, f"damaged image ({_first_line(exc)})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
