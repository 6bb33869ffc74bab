"""Every supported input format, and every kind of bad input, becomes pages or a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formreader.ingest import discover, read_pages


def _page(h: int = 300, w: int = 200) -> Image.Image:
    arr = np.full((h, w), 255, np.uint8)
    arr[50:60, 20:180] = 0
    return Image.fromarray(arr)


def test_images_pdfs_and_multipage_tiffs(tmp_path: Path):
    _page().save(tmp_path / "a.png")
    _page().save(tmp_path / "b.jpg", quality=80)
    _page().save(tmp_path / "c.tif", save_all=True, append_images=[_page(), _page()])
    _page().convert("RGB").save(tmp_path / "d.pdf", save_all=True, append_images=[_page().convert("RGB")], resolution=100)
    counts = {p.name: len(read_pages(p, dpi=100)) for p in discover([tmp_path])}
    assert counts == {"a.png": 1, "b.jpg": 1, "c.tif": 3, "d.pdf": 2}
    for path in discover([tmp_path]):
        for page in read_pages(path, dpi=100):
            assert page.error == "" and page.image.ndim == 2 and page.image.dtype == np.uint8
            assert page.image.min() < 50  # the black bar survived


def test_folders_are_searched_recursively_and_sorted(tmp_path: Path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    _page().save(tmp_path / "x" / "y" / "deep.png")
    _page().save(tmp_path / "top.png")
    (tmp_path / "notes.txt").write_text("not a scan")
    assert [p.name for p in discover([tmp_path])] == ["top.png", "deep.png"]  # path order


def _encrypted_pdf(path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = path.with_suffix(".plain.pdf")
    _page().convert("RGB").save(plain)
    writer = PdfWriter()
    writer.append(PdfReader(plain))
    writer.encrypt(user_password="secret", owner_password="owner")
    writer.write(path)
    plain.unlink()


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("empty.pdf", lambda p: p.write_bytes(b""), "empty file"),
        ("empty.png", lambda p: p.write_bytes(b""), "empty file"),
        ("truncated.pdf", lambda p: (_page().convert("RGB").save(p), p.write_bytes(p.read_bytes()[:300])), "PDF"),
        ("encrypted.pdf", _encrypted_pdf, "encrypted"),
        ("text.jpg", lambda p: p.write_text("hello, I am not a JPEG"), "not an image"),
        ("broken.png", lambda p: (_page().save(p), p.write_bytes(p.read_bytes()[:120])), "damaged image"),
        ("scan.docx", lambda p: p.write_text("x"), "unsupported file type"),
    ],
)
def test_bad_inputs_become_errors_naming_the_cause(tmp_path: Path, name, make, expected):
    path = tmp_path / name
    make(path)
    pages = read_pages(path)
    assert len(pages) == 1 and pages[0].image is None
    assert expected.lower() in pages[0].error.lower(), pages[0].error
    assert pages[0].file == str(path)


def test_oversized_pages_are_refused_before_decoding(tmp_path: Path):
    _page(2000, 1500).save(tmp_path / "big.png")
    _page(2000, 1500).convert("RGB").save(tmp_path / "big.pdf", resolution=72)
    assert "too large" in read_pages(tmp_path / "big.png", max_pixels=1_000_000)[0].error
    assert "too large" in read_pages(tmp_path / "big.pdf", dpi=200, max_pixels=1_000_000)[0].error


def test_missing_file(tmp_path: Path):
    assert read_pages(tmp_path / "nope.pdf")[0].error == "file not found"
