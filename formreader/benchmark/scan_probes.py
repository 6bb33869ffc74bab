"""Issue 14's probes, re-runnable: hostile names, odd formats, huge pages, bad options, bad outputs.

    python -m formreader.benchmark.scan_probes            # a minute or two on 2 cores; builds inputs in out/scan-probes/

Each probe runs `python -m formreader scan ...` in a fresh process (default model and settings) and
prints what happened: exit code, rows, errors, peak RSS (the formreader process; poppler apart),
seconds. The long-file memory figures come from formreader/benchmark/scan_memory.py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: inputs go to out/
from formreader.benchmark.scan_memory import WRAPPER


def run(args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "scan", *args], cwd=cwd, env=env, capture_output=True)
    seconds = time.perf_counter() - t0
    err = proc.stderr.decode("utf-8", "replace")
    peak = next((json.loads(line[5:]) for line in err.splitlines() if line.startswith("PEAK ")), {})
    message = " ".join(line.strip() for line in err.splitlines() if "error" in line.lower() or "crash" in line.lower())[:160]
    return {"rc": proc.returncode, "seconds": seconds, "rss_mb": peak.get("self_mb", 0.0), "message": message}


def rows_of(out: Path) -> list[dict]:
    if not out.is_file():
        return []
    with open(out, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    import cv2
    import numpy as np
    from PIL import Image

    from formreader.template import Template
    from tests.forms import Scan, fill, scan

    base = ROOT / "out" / "scan-probes"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    form = scan(fill(Template.load(), {"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"}), Scan(angle=1.5))
    good = cv2.imencode(".png", form)[1].tobytes()
    results = []

    def probe(name: str, folder: Path, args: list[str], out: str = "r.csv", check=None):
        if (folder / out).is_file():
            (folder / out).unlink()  # rows of an earlier probe are not this one's
        r = run([*args, "--out", out], folder)
        got = rows_of(folder / out)
        r["rows"] = len(got)
        r["what"] = check(got) if check and got else ""
        results.append((name, r))
        print(f"{name:<34} rc={r['rc']:<3} rows={r['rows']:<4} rss={r['rss_mb']:>5.0f} MB {r['seconds']:>5.1f} s  {r['what'] or r['message']}", flush=True)

    # 1. a name that is not UTF-8 among good ones
    d = base / "nonutf8"
    d.mkdir()
    for name in (b"a\xffb.png", b"good1.png", b"good2.png"):
        (d / os.fsdecode(name)).write_bytes(good)
    probe("non-UTF-8 name among good ones", d, ["."],
          check=lambda g: f"{len(g)} rows; name bytes kept: {os.fsencode(g[0]['file']) == b'a' + bytes([255]) + b'b.png'}")
    # 2. formula names passed bare
    d = base / "formula"
    d.mkdir()
    names = ["=1+1.png", '=HYPERLINK("x","y").png']
    for name in names:
        (d / name).write_bytes(good)
    probe("=1+1.png, =HYPERLINK(..).png bare", d, names, check=lambda g: "file cells: " + ", ".join(r["file"][:12] for r in g))
    # 3. 16-bit PNG and ink on a transparent PNG
    d = base / "formats"
    d.mkdir()
    Image.fromarray(form.astype(np.uint16) * 257).save(d / "gray16.png")
    rgba = np.zeros(form.shape + (4,), np.uint8)
    rgba[..., 3] = 255 - form  # ink opaque, paper transparent (and black underneath)
    Image.fromarray(rgba, "RGBA").save(d / "transparent.png")
    probe("16-bit PNG + ink on transparent PNG", d, ["."],
          check=lambda g: "; ".join(f"{Path(r['file']).name}: align {r['alignment']} {r['error'] or 'ok'}" for r in g))
    # 4. PDF whose second page is 5 m x 5 m
    d = base / "hugepage"
    d.mkdir()
    page = Image.fromarray(form)
    page.save(d / "one-huge.pdf", save_all=True, append_images=[Image.new("L", (1969, 1969), 255), page], resolution=200)
    # Page 2 at 10 dpi: re-save with pypdf would be cleaner; a page 1969 px at resolution 10 is 5 m wide.
    _resize_pdf_page(d / "one-huge.pdf", 1, 14173.0)
    probe("PDF, page 2 is 5 m x 5 m", d, ["one-huge.pdf"],
          check=lambda g: "; ".join(f"p{r['page']}: {r['error'][:45] or 'ok'}" for r in g))
    # 5. TIFF good / 30000^2 header / good
    d = base / "tiff"
    d.mkdir()
    Image.fromarray(form).save(d / "three.tif", save_all=True, append_images=[Image.new("L", (77, 123), 255), Image.fromarray(form)])
    from tests.test_ingest import _patch_tiff_frame_size

    _patch_tiff_frame_size(d / "three.tif", 1, 30000, 30000)
    probe("TIFF good / 30000^2 / good", d, ["three.tif"],
          check=lambda g: "; ".join(f"p{r['page']}: {r['error'][:40] or 'ok'}" for r in g))
    # 6. output in a read-only place or onto a folder; 7. bad options; 8. crops of same-named files
    (base / "isdir.csv").mkdir()
    probe("--out onto an existing folder", d, ["three.tif"], out=str(base / "isdir.csv"))
    probe("--out in a read-only filesystem", d, ["three.tif"], out="/proc/r.csv")
    for opts in (["--threads", "10000"], ["--dpi", "0"], ["--dpi", "nan"], ["--review-threshold", "nan"], ["--batch-size", "0"]):
        probe(" ".join(opts), d, ["three.tif", *opts])
    d = base / "crops"
    for sub in ("a", "b"):
        (d / sub).mkdir(parents=True)
        (d / sub / "scan.png").write_bytes(good)
    probe("--crops, scan.png in two folders", d, [".", "--crops", "crops"],
          check=lambda g: f"{len(list((d / 'crops').glob('*.png')))} crop files for {len(g)} pages")
    (base / "probes.json").write_text(json.dumps(dict(results), indent=1) + "\n")


def _resize_pdf_page(path: Path, index: int, size_pt: float) -> None:
    """Make page `index` (0-based) size_pt x size_pt, media and crop box (a hostile page size)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import RectangleObject

    writer = PdfWriter()
    for i, page in enumerate(PdfReader(path).pages):
        if i == index:
            page.mediabox = page.cropbox = RectangleObject([0, 0, size_pt, size_pt])
        writer.add_page(page)
    writer.write(path)


if __name__ == "__main__":
    main()
