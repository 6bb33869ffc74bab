"""Filled-in forms drawn inside the tests: values written into a template's boxes, then 'scanned'."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# The alignment benchmark's page drawing and fixed perturbations, re-exported for the tests.
from formreader.benchmark.alignment import Scan, fill, scan  # noqa: F401
from formreader.render import render_layout
from formreader.template import DEFAULT_TEMPLATE_DIR, Layout

TEMPLATES = DEFAULT_TEMPLATE_DIR.parent

# A second form (boxed fields, labels above the boxes, printed date separators), bundled as an
# example template and used by the boxed-form benchmark sets (README, "Accuracy and speed").
SECOND_LAYOUT = json.loads((TEMPLATES / "inscription-b" / "template.json").read_text(encoding="utf-8"))["layout"]


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
