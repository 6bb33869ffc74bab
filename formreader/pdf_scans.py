"""PDF pages that are one scanned JPEG: their pixels decoded straight from the file, not rendered.

A scanner's PDF page paints one JPEG over the whole page (often under an invisible OCR text layer)
and nothing else. Decoding that JPEG gives the pixels poppler would render, without the rendering
and without a poppler process: about 8 CPU ms for an A4 page at 200 dpi against 70 ms. Every page
that is anything more (vector lines or visible text, a mask, a rotation, a transform other than
"fill the page", a filter or colour space other than gray/RGB JPEG) returns None and is rendered
by poppler as before (`ingest`). pikepdf (qpdf) reads the page's objects without parsing the
whole file, so a 300-page PDF costs the same per page as a one-page one.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

# Operators that paint nothing: graphics state, marked content, and text objects, whose showing
# operators are allowed only in render mode 3 (invisible: the OCR layer of a searchable scan).
NEUTRAL_OPS = {"q", "Q", "cm", "w", "J", "j", "M", "d", "ri", "i", "BMC", "BDC", "EMC", "MP", "DP",
               "BT", "ET", "Tf", "Tm", "Td", "TD", "T*", "Tc", "Tw", "Tz", "TL", "Ts", "Tr"}
SHOW_TEXT_OPS = {"Tj", "TJ", "'", '"'}
INVISIBLE_TEXT = 3
COLOUR_SPACES = {"/DeviceGray": 1, "/DeviceRGB": 3}
FIT_TOLERANCE_PT = 0.5  # how far the image's edges may sit from the crop box's
SIZE_TOLERANCE_PX = 1  # poppler rounds the page's pixel size up; a pixel either way is the same page


def open_pdf(path: Path):
    """The file for `scanned_page`, or None when pikepdf cannot open it (poppler will say why)."""
    try:
        import pikepdf

        return pikepdf.open(path)
    except Exception:  # a damaged or encrypted file: the poppler path reports it
        return None


def scanned_page(pdf, number: int, dpi: float) -> np.ndarray | None:
    """Page `number` (1-based) as gray uint8 at `dpi`, when it is one full-page JPEG; else None."""
    try:
        page = pdf.pages[number - 1]
        box = [float(v) for v in page.cropbox]
        if _inherited(page.obj, "/Rotate", 0) % 360 or float(page.obj.get("/UserUnit", 1)) != 1:
            return None
        drawn = _only_image_drawn(page)
        if drawn is None:
            return None
        name, ctm = drawn
        image = _inherited(page.obj, "/Resources", {})["/XObject"][name]
        if not _covers(ctm, box) or not _plain_jpeg(image):
            return None
        gray = cv2.imdecode(np.frombuffer(image.read_raw_bytes(), np.uint8),
                            cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    except Exception:  # anything unexpected in the file: let poppler render the page
        return None
    if gray is None or gray.shape != (int(image.Height), int(image.Width)):
        return None
    return _at_dpi(gray, box, dpi)


def _inherited(obj, key: str, default):
    """A page attribute, looked up through its parents as the PDF format inherits it."""
    for _ in range(64):  # a page tree deeper than this is hostile
        if key in obj:
            return obj[key]
        if "/Parent" not in obj:
            break
        obj = obj["/Parent"]
    return default


def _only_image_drawn(page) -> tuple[str, np.ndarray] | None:
    """(XObject name, transform) of the one thing the page paints, if that is one XObject."""
    import pikepdf

    ctm, stack, mode, modes = np.eye(3), [], 0, []
    drawn = None
    for operands, operator in pikepdf.parse_content_stream(page):
        op = str(operator)
        if op == "Do":
            if drawn is not None:
                return None
            drawn = (str(operands[0]), ctm)
        elif op in SHOW_TEXT_OPS:
            if mode != INVISIBLE_TEXT:
                return None
        elif op not in NEUTRAL_OPS:
            return None
        elif op == "q":
            stack.append(ctm)
            modes.append(mode)
        elif op == "Q":
            if not stack:
                return None
            ctm, mode = stack.pop(), modes.pop()
        elif op == "cm":
            a, b, c, d, e, f = (float(v) for v in operands)
            ctm = np.array([[a, b, 0], [c, d, 0], [e, f, 1]]) @ ctm
        elif op == "Tr":
            mode = int(operands[0])
    return drawn


def _covers(ctm: np.ndarray, box: list[float]) -> bool:
    """Whether the unit square (the image) lands upright on exactly the crop box."""
    (a, b, _), (c, d, _), (e, f, _) = ctm
    x0, y0, x1, y1 = box
    tol = FIT_TOLERANCE_PT
    return (abs(b) < 1e-6 and abs(c) < 1e-6 and abs(a - (x1 - x0)) <= tol and abs(d - (y1 - y0)) <= tol
            and abs(e - x0) <= tol and abs(f - y0) <= tol)


def _plain_jpeg(image) -> bool:
    """An 8-bit gray or RGB baseline image, one DCT filter, no mask, no decode array."""
    if str(image.get("/Subtype")) != "/Image" or bool(image.get("/ImageMask", False)):
        return False
    if any(key in image for key in ("/SMask", "/Mask", "/Decode", "/DecodeParms", "/SMaskInData")):
        return False
    import pikepdf

    filters = image.get("/Filter")
    filters = [str(f) for f in filters] if isinstance(filters, pikepdf.Array) else [str(filters)]
    if filters != ["/DCTDecode"] or int(image.get("/BitsPerComponent", 0)) != 8:
        return False
    space = image.get("/ColorSpace")
    if str(space) in COLOUR_SPACES:
        return True
    # An ICC-based gray or RGB space (scanners embed sRGB profiles): the same pixels, managed.
    try:
        return str(space[0]) == "/ICCBased" and int(space[1].get("/N", 0)) in COLOUR_SPACES.values()
    except Exception:
        return False


def _at_dpi(gray: np.ndarray, box: list[float], dpi: float) -> np.ndarray:
    """The image at the size poppler renders the crop box at `dpi` (it rounds up)."""
    width = math.ceil((box[2] - box[0]) * dpi / 72.0 - 1e-6)
    height = math.ceil((box[3] - box[1]) * dpi / 72.0 - 1e-6)
    h, w = gray.shape
    if abs(w - width) <= SIZE_TOLERANCE_PX and abs(h - height) <= SIZE_TOLERANCE_PX:
        return gray
    shrink = width * height < w * h
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
