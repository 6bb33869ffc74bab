"""Helpers for the watch tests and the soak: small unique forms, slow copies, reading the output."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from formreader.render import template_from_layout
from formreader.template import Template
from tests.forms import fill

ROOT = Path(__file__).resolve().parents[1]
DPI = 100  # half the bundled template's resolution: a few-KB page that aligns 2x faster
NAMES = ["DUPONT", "MARTIN", "BERNARD", "PETIT", "DURAND", "LEROY", "MOREAU", "SIMON"]


def small_template(directory: Path) -> Path:
    """The bundled fiche-a layout drawn at DPI, saved as a template folder."""
    tpl = template_from_layout(Template.load().layout, DPI)
    return tpl.save(directory)


class FormMaker:
    """Filled forms with unique content (the ledger dedupes by content hash, so each file must differ)."""

    def __init__(self, template_dir: Path):
        self.template_dir = Path(template_dir)
        self.template = Template.load(template_dir)
        self._pages = [fill(self.template, {"NOM": n, "PRENOM": "MARIE", "DATE": "01/02/1990"}) for n in NAMES[:4]]

    def page(self, n: int) -> np.ndarray:
        img = self._pages[n % len(self._pages)].copy()
        # A serial number in the bottom margin makes every file's bytes unique.
        cv2.putText(img, f"{n:06d}", (20, img.shape[0] - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1)
        return img

    def image_bytes(self, n: int, ext: str = ".png") -> bytes:
        params = [cv2.IMWRITE_JPEG_QUALITY, 80] if ext == ".jpg" else []
        ok, buf = cv2.imencode(ext, self.page(n), params)
        assert ok
        return buf.tobytes()

    def pdf_bytes(self, n: int, pages: int = 2) -> bytes:
        images = [Image.fromarray(self.page(n * 100 + i)) for i in range(pages)]
        out = io.BytesIO()
        images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=DPI)
        return out.getvalue()

    def make(self, n: int) -> tuple[str, bytes, int]:
        """(file name, bytes, pages) of the n-th good file: mostly PNG/JPEG, every 10th a 2-page PDF."""
        if n % 10 == 9:
            return f"form{n:05d}.pdf", self.pdf_bytes(n), 2
        ext = ".jpg" if n % 2 else ".png"
        return f"form{n:05d}{ext}", self.image_bytes(n, ext), 1


def long_pdf(pages: int) -> bytes:
    """A long PDF of blank A4 pages: a few KB to store, slow and big to render at 200 dpi."""
    image = Image.new("1", (83, 117), 1)  # 83 x 117 px at 10 dpi = A4
    out = io.BytesIO()
    image.save(out, format="PDF", save_all=True, append_images=[image] * (pages - 1), resolution=10)
    return out.getvalue()


def huge_image(megapixels: float = 59.0) -> bytes:
    """A gray PNG just under the default 60 MP page limit: decoded in full, a blank page."""
    side = int((megapixels * 1e6) ** 0.5)
    img = np.full((side, side), 255, np.uint8)
    img[::97, :] = 0  # some structure, so the aligner has work
    return cv2.imencode(".png", img)[1].tobytes()


def bad_files(maker: FormMaker, serial: int = 0) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, a word the failure reason must contain); contents differ with `serial`
    (except the empty file: every empty file has the same hash, so a second one is a duplicate)."""
    good = maker.image_bytes(90_000 + serial, ".jpg")
    noise = np.random.default_rng(serial).integers(0, 256, (600, 420), dtype=np.uint8)
    white = np.full((1169, 827), 255, np.uint8)
    white[serial % 1169, (serial // 1169) % 827] = 254
    return {
        "empty.pdf": (b"", "empty"),
        "truncated.jpg": (good[: len(good) // 3], "damaged"),
        "corrupt.pdf": (b"%PDF-1.4\n" + os.urandom(2000), "PDF"),
        "notes.txt": (f"not a scan {serial}\n".encode(), "unsupported"),
        "noise.png": (cv2.imencode(".png", noise)[1].tobytes(), "does not match"),
        "white.png": (cv2.imencode(".png", white)[1].tobytes(), "does not match"),
    }


def drop(inbox: Path, name: str, data: bytes) -> Path:
    """How a careful copier delivers: write under a temporary name, then rename (atomic)."""
    tmp = inbox / f"{name}.part"
    tmp.write_bytes(data)
    final = inbox / name
    os.replace(tmp, final)
    return final


def slow_copy(inbox: Path, name: str, data: bytes, chunks: int = 5, pause: float = 0.2) -> Path:
    """How a scanner on a slow share delivers: the final name grows chunk by chunk."""
    path = inbox / name
    step = max(1, len(data) // chunks)
    with open(path, "wb") as fh:
        for start in range(0, len(data), step):
            fh.write(data[start : start + step])
            fh.flush()
            time.sleep(pause)
    return path


def read_rows(out: Path) -> list[dict]:
    if not out.exists():
        return []
    text = out.read_text(encoding="utf-8")
    if out.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    return [json.loads(line) for line in text.splitlines()]


def row_keys(rows: list[dict]) -> list[tuple[str, int]]:
    return [(Path(r["file"]).name, int(r["page"])) for r in rows]


def wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def settled_names(inbox: Path) -> set[str]:
    """Input names that reached done/ or failed/ (not the .error.txt notes)."""
    out = set()
    for folder in ("done", "failed"):
        d = inbox / folder
        if d.is_dir():
            out |= {p.name for p in d.iterdir() if not p.name.endswith(".error.txt")}
    return out


def watch_command(inbox: Path, out: Path, template: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "formreader", "watch", str(inbox), "--out", str(out), "--template", str(template),
            "--model", str(model), "--device", "cpu", "--threads", "1", *extra]


def start_daemon(cmd: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
