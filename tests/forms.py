"""Filled-in forms drawn inside the tests: values written into a template's boxes, then 'scanned'."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# The alignment benchmark's page drawing and fixed perturbations, re-exported for the tests.
from formreader.benchmark.alignment import Scan, fill, scan  # noqa: F401
from formreader.render import render_layout
from formreader.template import Layout

SECOND_LAYOUT = {
    "name": "inscription-b",
    "title": "A second form: boxed fields, labels above the boxes, printed date separators",
    "page_mm": [210, 297],
    "printed": [
        {"text": "BULLETIN D'INSCRIPTION", "mm": [30, 30], "size_mm": 8, "bold": True},
        {"text": "Association sportive - saison 2026", "mm": [30, 42], "size_mm": 4},
        {"text": "Cadre réservé à l'administration", "mm": [20, 250], "size_mm": 3.5},
    ],
    "rules": [[15, 50, 195, 50], [15, 240, 195, 240]],
    "boxes": [[150, 255, 40, 25]],
    "fields": [
        {"name": "PRENOM", "label": "Prénom", "label_mm": [25, 70], "value_mm": [25, 73, 120, 14], "box": True},
        {"name": "NOM", "label": "Nom de famille", "label_mm": [25, 105], "value_mm": [25, 108, 150, 14], "box": True},
        {"name": "DATE", "label": "Né(e) le", "label_mm": [25, 140], "value_mm": [25, 143, 70, 14], "kind": "date",
         "box": True, "slashes_mm": [21, 44]},
        {"name": "VILLE", "label": "Ville", "label_mm": [110, 140], "value_mm": [110, 143, 80, 14], "box": True, "fill": False},
    ],
}


def write_mixed_files(root: Path, page: np.ndarray) -> None:
    """What every scan test set holds besides its single images: a 2-page PDF and a 2-frame TIFF
    of `page` in a subfolder, an empty PDF, text named .png, and a page of another form."""
    (root / "sub").mkdir()
    for name, extra in (("two.pdf", {"resolution": 200}), ("c.tif", {})):
        # Fresh images per file: Pillow keeps PDF encoder state on an image it has saved.
        pages = [Image.fromarray(scan(page, Scan(angle=a))) for a in (1, -1)]
        pages[0].save(root / "sub" / name, save_all=True, append_images=pages[1:], **extra)
    (root / "zero.pdf").write_bytes(b"")
    (root / "garbage.png").write_text("not an image")
    cv2.imwrite(str(root / "other.png"), render_layout(Layout.from_dict(SECOND_LAYOUT)))  # a different form
