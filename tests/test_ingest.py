"""Every supported input format, and every kind of bad input, becomes pages or a clear error."""

from __future__ import annotations

import io
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


# --- every format a scanner writes -------------------------------------------------------

def _form_rgb(h: int = 300, w: int = 200) -> np.ndarray:
    return np.stack([np.asarray(_page(h, w))] * 3, axis=-1)


def _ink_on_transparent(mode: str) -> Image.Image:
    """A black bar on a fully transparent background whose hidden colour is black too: read
    naively (alpha dropped) the page is all black."""
    rgba = np.zeros((300, 200, 4), np.uint8)
    rgba[50:60, 20:180, 3] = 255
    return Image.fromarray(rgba, "RGBA").convert(mode)


def _exif_rotated(path: Path, mode: str = "L") -> None:
    img = _page(300, 200).transpose(Image.Transpose.ROTATE_90).convert(mode)  # stored sideways (200 high, 300 wide)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(path, exif=exif, quality=90)


SCANNER_FORMATS = {
    "bilevel.png": lambda p: _page().convert("1").save(p),
    "bilevel-g4.tif": lambda p: _page().convert("1").save(p, compression="group4"),
    "gray8.png": lambda p: _page().save(p),
    "gray16.png": lambda p: Image.fromarray(np.asarray(_page()).astype(np.uint16) * 257).save(p),
    "gray16.tif": lambda p: Image.fromarray(np.asarray(_page()).astype(np.uint16) * 257).save(p),
    "float.tif": lambda p: Image.fromarray(np.asarray(_page()).astype(np.float32) / 255).save(p),
    "rgb.jpg": lambda p: Image.fromarray(_form_rgb()).save(p, quality=90),
    "rgba.png": lambda p: _ink_on_transparent("RGBA").save(p),
    "la.png": lambda p: _ink_on_transparent("LA").save(p),
    "palette-transparent.png": lambda p: _ink_on_transparent("RGBA").convert("P", palette=Image.Palette.ADAPTIVE).save(p, transparency=0),
    "palette.gif.png": lambda p: Image.fromarray(_form_rgb()).convert("P").save(p),
    "cmyk.jpg": lambda p: Image.fromarray(_form_rgb()).convert("CMYK").save(p, quality=90),
    "cmyk.tif": lambda p: Image.fromarray(_form_rgb()).convert("CMYK").save(p),
    "exif-rotated.jpg": _exif_rotated,
    "exif-rotated-rgb.jpg": lambda p: _exif_rotated(p, "RGB"),
    "gray.pgm": lambda p: _page().save(p),
    "rgb.ppm": lambda p: Image.fromarray(_form_rgb()).save(p),
    "gray.webp": lambda p: _page().save(p, lossless=True),
    "gray.bmp": lambda p: _page().save(p),
}


@pytest.mark.parametrize("name", sorted(SCANNER_FORMATS))
def test_every_scanner_format_reads_as_ink_on_white_paper(tmp_path: Path, name: str):
    path = tmp_path / name
    SCANNER_FORMATS[name](path)
    (page,) = read_pages(path)
    assert page.error == "" and page.image.dtype == np.uint8 and page.image.shape == (300, 200), page.error
    assert page.image[55, 20:180].mean() < 60, "the bar is dark"
    assert page.image[100:300].mean() > 240, "the paper is white"


def test_a_colour_jpeg_reads_as_the_gray_pillow_converts_it_to(tmp_path: Path):
    path = tmp_path / "colour.jpg"
    Image.fromarray(_form_rgb()).save(path, quality=90)
    (page,) = read_pages(path)
    with Image.open(path) as img:
        converted = np.asarray(img.convert("L")).astype(int)
    assert np.abs(page.image.astype(int) - converted).max() <= 1


@pytest.mark.skipif(not __import__("PIL.features").features.check("jpg_2000"), reason="Pillow without OpenJPEG")
def test_jpeg_2000(tmp_path: Path):
    _page().save(tmp_path / "scan.jp2")
    (page,) = read_pages(tmp_path / "scan.jp2")
    assert page.error == "" and page.image[55, 20:180].mean() < 60 and page.image[100:].mean() > 240


def test_multi_frame_tiff_with_mixed_frame_sizes(tmp_path: Path):
    frames = [_page(300, 200), _page(600, 400).convert("1"), Image.fromarray(_form_rgb(150, 100))]
    frames[0].save(tmp_path / "mixed.tif", save_all=True, append_images=frames[1:])
    pages = read_pages(tmp_path / "mixed.tif")
    assert [p.image.shape for p in pages] == [(300, 200), (600, 400), (150, 100)]
    assert all(p.error == "" and p.image.min() < 50 for p in pages)


# --- the pixel limit applies to every page and frame, before decoding ----------------------

def _patch_tiff_frame_size(path: Path, frame: int, width: int, height: int) -> None:
    """Make frame `frame` (0-based) claim width x height in its IFD: a hostile header."""
    import struct

    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    offset = struct.unpack_from("<I", data, 4)[0]
    for _ in range(frame):
        (n,) = struct.unpack_from("<H", data, offset)
        offset = struct.unpack_from("<I", data, offset + 2 + 12 * n)[0]
    (n,) = struct.unpack_from("<H", data, offset)
    for i in range(n):
        entry = offset + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, value)
    path.write_bytes(bytes(data))


def test_an_oversized_tiff_frame_is_one_error_row_and_its_neighbours_are_read(tmp_path: Path):
    path = tmp_path / "three.tif"
    _page().save(path, save_all=True, append_images=[_page(77, 123), _page()])
    _patch_tiff_frame_size(path, 1, 30000, 30000)
    pages = read_pages(path)
    assert [p.page for p in pages] == [1, 2, 3]
    assert "too large" in pages[1].error and "30000x30000" in pages[1].error and pages[1].image is None
    assert pages[0].error == pages[2].error == "" and pages[2].image.shape == (300, 200)


def test_an_oversized_pdf_page_is_one_error_row_and_its_neighbours_are_read(tmp_path: Path):
    path = tmp_path / "huge-second-page.pdf"
    small = _page().convert("RGB")
    huge = Image.new("RGB", (1969, 1969), "white")  # at 10 dpi: 5 m x 5 m, 1.5 G pixels at 200 dpi
    small.save(path, save_all=True, append_images=[huge, _page().convert("RGB")], resolution=10)
    pages = read_pages(path, dpi=20, max_pixels=1_000_000)  # small pages: 400 x 600 px; page 2: 15 M
    assert [p.page for p in pages] == [1, 2, 3]
    assert "too large" in pages[1].error and "5001 x 5001 mm" in pages[1].error
    assert pages[0].error == pages[2].error == "" and pages[0].image.shape == (600, 400)


def test_pdf_pages_render_their_crop_box_whatever_the_media_box_claims(tmp_path: Path):
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import RectangleObject

    plain = tmp_path / "plain.pdf"
    _page().convert("RGB").save(plain, resolution=72)
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        page.mediabox = RectangleObject([0, 0, 14000, 14000])  # what poppler renders by default
        page.cropbox = RectangleObject([0, 0, 200, 300])  # what pdfinfo reports and viewers show
        writer.add_page(page)
    writer.write(tmp_path / "boxes.pdf")
    (page,) = read_pages(tmp_path / "boxes.pdf", dpi=72, max_pixels=1_000_000)
    assert page.error == "" and page.image.shape == (300, 200)


# --- streaming ------------------------------------------------------------------------------

def test_pages_stream_in_ranges_and_counts_come_without_decoding(tmp_path: Path):
    from formreader.ingest import iter_pages, page_count

    frames = [_page() for _ in range(6)]
    frames[0].save(tmp_path / "six.tif", save_all=True, append_images=frames[1:])
    frames[0].convert("RGB").save(tmp_path / "six.pdf", save_all=True, append_images=[f.convert("RGB") for f in frames[1:]], resolution=100)
    for name in ("six.tif", "six.pdf"):
        path = tmp_path / name
        assert page_count(path) == 6
        stream = iter_pages(path, dpi=100, first=3, last=5)
        assert not isinstance(stream, list)
        assert [p.page for p in stream] == [3, 4, 5]
        assert [p.page for p in iter_pages(path, dpi=100, first=5)] == [5, 6]
    assert page_count(tmp_path / "missing.pdf") == 1 and page_count(tmp_path) == 1


# --- scanned PDFs: a page that is one JPEG is decoded, not rendered -------------------------

def _scan_pdf(path: Path, extra: bytes = b"", rotate: int = 0, fraction: float = 1.0) -> np.ndarray:
    """A one-page PDF holding a 200 x 300 gray JPEG at 100 dpi (Pillow writes DCT), optionally
    with more content drawn after it, a /Rotate, or the image shrunk to part of the page."""
    import pikepdf

    arr = np.full((300, 200), 230, np.uint8)
    arr[100:110, 20:180] = 20
    arr[200:260, 50:60] = 60
    Image.fromarray(arr).save(path, resolution=100, quality=90)
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        page = pdf.pages[0]
        if fraction != 1.0:
            w, h = (float(v) for v in page.mediabox[2:])
            page.obj.Contents = pdf.make_stream(f"q {w * fraction} 0 0 {h * fraction} 0 0 cm /image Do Q".encode())
        if extra:
            page.Resources.Font = pikepdf.Dictionary(F1=pikepdf.Dictionary(
                Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica))
            page.contents_add(pdf.make_stream(extra), prepend=False)
        if rotate:
            page.obj.Rotate = rotate
        pdf.save(path)
    return arr


def _poppler(path: Path, dpi: float) -> np.ndarray:
    from pdf2image import convert_from_path

    return np.asarray(convert_from_path(str(path), dpi=dpi, grayscale=True, use_cropbox=True)[0].convert("L"))


def test_a_scanned_pdf_page_is_its_own_jpeg_not_a_rendering(tmp_path: Path):
    import pikepdf

    from formreader.pdf_scans import open_pdf, scanned_page

    path = tmp_path / "scan.pdf"
    drawn = _scan_pdf(path)
    with pikepdf.open(path) as pdf:
        jpeg = bytes(pdf.pages[0].Resources.XObject["/image"].read_raw_bytes())
    own = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))
    (page,) = read_pages(path, dpi=100)
    assert page.error == "" and page.image.shape == (300, 200) == _poppler(path, 100).shape
    assert np.array_equal(page.image, own)  # the scan's pixels as they are in the file
    assert np.abs(page.image.astype(int) - drawn).mean() < 3
    assert np.abs(page.image.astype(int) - _poppler(path, 100)).mean() < 3  # what poppler draws
    # Another dpi: resized to what poppler would render.
    half = scanned_page(open_pdf(path), 1, 50)
    assert half.shape == _poppler(path, 50).shape == (150, 100)
    assert np.abs(half.astype(int) - _poppler(path, 50)).mean() < 6


@pytest.mark.parametrize("kind", ["vector line", "visible text", "rotated", "image not filling the page"])
def test_a_pdf_page_with_more_than_one_scan_on_it_is_rendered_by_poppler(tmp_path: Path, kind: str):
    from formreader.pdf_scans import open_pdf, scanned_page

    path = tmp_path / "page.pdf"
    extra = {"vector line": b"q 0 G 8 w 10 10 m 130 200 l S Q",
             "visible text": b"BT /F1 40 Tf 0 Tr 10 10 Td (INK) Tj ET"}.get(kind, b"")
    _scan_pdf(path, extra=extra, rotate=90 if kind == "rotated" else 0,
              fraction=0.5 if kind == "image not filling the page" else 1.0)
    assert scanned_page(open_pdf(path), 1, 100) is None
    (page,) = read_pages(path, dpi=100)
    assert page.error == "" and np.array_equal(page.image, _poppler(path, 100))


def test_an_invisible_ocr_text_layer_does_not_stop_the_direct_decode(tmp_path: Path):
    from formreader.pdf_scans import open_pdf, scanned_page

    path = tmp_path / "searchable.pdf"
    _scan_pdf(path, extra=b"BT /F1 40 Tf 3 Tr 10 10 Td (HIDDEN) Tj ET")
    assert scanned_page(open_pdf(path), 1, 100) is not None
