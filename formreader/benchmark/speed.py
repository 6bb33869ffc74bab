"""How fast `formreader scan` reads a set of files, against merely decoding them, in one run.

    formreader benchmark --speed out/speed200 --report out/speed.json [--tesseract-pages 20]
    formreader benchmark --speed out/speed200 --generate 200     # make the mixed set first

On the same files with the same number of workers, one after the other:

- decode-only: every page decoded to gray pixels and nothing else (pdftoppm for PDF, OpenCV for
  images), `workers` processes. The floor no scanner can beat. Run before and after the scan.
- scan: a fresh `formreader` process runs the scan pipeline (ingest, align, segment, recognize,
  decode) over the files; its own clock gives pages/s after start-up, the parent's clock the same
  with start-up included; its records give time per stage, its rusage CPU time and peak memory.
- start-up: `formreader --help`, and a fresh `formreader scan` of one page against the same page
  scanned again in-process once everything is loaded.
- optionally Tesseract (`tesseract PAGE - -l fra`, page after page) against one `formreader scan`
  of the same PNG pages, start-up included for both.

The machine may be shared: absolute times move with its load, ratios measured in one run much
less, so the report leads with ratios and records the load average.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from formreader.ingest import IMAGE_SUFFIXES, PDF_SUFFIXES, discover
from formreader.records import STAGES

SET_FORMATS = "pdf,jpg,png,tif"


@dataclass
class Measure:
    """One timed phase: pages done, wall seconds, CPU seconds of every process involved."""

    pages: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float = 0.0

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_page(self) -> float:
        return 1000 * self.cpu_seconds / self.pages if self.pages else 0.0

    def as_dict(self) -> dict:
        return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()},
                "pages_per_s": round(self.pages_per_s, 3), "cpu_ms_per_page": round(self.cpu_ms_per_page, 1)}


@dataclass
class SpeedSettings:
    workers: int = 2
    dpi: float = 200.0
    tesseract_pages: int = 0  # 0: no Tesseract comparison
    config: Path | None = None  # TOML settings passed to the scan (template, model, ...)


# --- decode-only -------------------------------------------------------------------------------

def decode_pages(path: str, dpi: float = 200.0) -> list[np.ndarray]:
    """Every page of a file as gray pixels, by the plainest fast route (no checks, no copies)."""
    suffix = Path(path).suffix.lower()
    if suffix in PDF_SUFFIXES:
        out = subprocess.run(["pdftoppm", "-gray", "-r", f"{dpi:g}", path], capture_output=True, check=True).stdout
        return _parse_pgm_stream(out)
    if suffix in (".tif", ".tiff"):
        ok, frames = cv2.imreadmulti(path, flags=cv2.IMREAD_GRAYSCALE)
        return list(frames) if ok else []
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return [] if image is None else [image]


def _parse_pgm_stream(data: bytes) -> list[np.ndarray]:
    """pdftoppm writes one binary PGM (P5) per page, back to back."""
    pages, pos = [], 0
    while pos < len(data):
        fields_, cursor = [], pos
        while len(fields_) < 4:  # magic, width, height, maxval
            while data[cursor:cursor + 1].isspace():
                cursor += 1
            end = cursor
            while not data[end:end + 1].isspace():
                end += 1
            fields_.append(data[cursor:end])
            cursor = end
        cursor += 1  # the single whitespace after maxval
        w, h = int(fields_[1]), int(fields_[2])
        pages.append(np.frombuffer(data, np.uint8, w * h, cursor).reshape(h, w))
        pos = cursor + w * h
    return pages


def _count_pages(path: str, dpi: float) -> int:
    return len(decode_pages(path, dpi))


def decode_only(files: list[Path], workers: int, dpi: float = 200.0) -> Measure:
    before = os.times()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pages = sum(pool.map(_count_pages, [str(f) for f in files], [dpi] * len(files)))
    seconds = time.perf_counter() - start
    after = os.times()  # the pool's processes (and their pdftoppm) are reaped: their CPU counts
    cpu = (after.children_user + after.children_system + after.user + after.system
           - before.children_user - before.children_system - before.user - before.system)
    return Measure(pages, seconds, cpu, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


# --- scan in a fresh process -------------------------------------------------------------------

def _formreader() -> list[str]:
    return [sys.executable, "-m", "formreader"]


def _child_env() -> dict[str, str]:
    # The child imports this very checkout, wherever it is installed from.
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _cpu() -> float:
    """CPU seconds of this process, its threads and its reaped children (pdftoppm)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def scan_child(files: list[str], workers: int, config: str | None, out: str) -> None:
    """Runs inside the fresh process: scan the files as `formreader scan` does, write a JSON."""
    t_import = time.perf_counter()
    from formreader.config import load_config
    from formreader.pipeline import Scanner
    from formreader.recognize.ensemble import (
        load_reader,  # what `formreader scan` loads
    )
    from formreader.template import Template

    cfg = load_config(Path(config) if config else None, {"workers": workers})
    template = Template.load(cfg.template)
    scanner = Scanner(template, load_reader(cfg.model, cfg.recognizer()), cfg.pipeline(), workers=cfg.workers)
    t_ready, cpu_ready = time.perf_counter(), _cpu()
    stages = dict.fromkeys(STAGES, 0.0)
    pages = failed = 0
    for record in scanner.scan([Path(f) for f in files]):
        pages += 1
        failed += bool(record.error)
        for stage, sec in record.timings.seconds.items():
            stages[stage] = stages.get(stage, 0.0) + sec
    t_done, cpu_done = time.perf_counter(), _cpu()
    result = {"pages": pages, "failed": failed, "load_seconds": t_ready - t_import, "scan_seconds": t_done - t_ready,
              "scan_cpu_seconds": cpu_done - cpu_ready, "stage_seconds": stages}
    Path(out).write_text(json.dumps(result))


def scan_fresh(files: list[Path], settings: SpeedSettings) -> dict:
    """Scan in a new process; returns the child's own figures plus wall, CPU and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="formreader-speed-") as tmp:
        out = Path(tmp) / "scan.json"
        args = [sys.executable, "-m", "formreader.benchmark.speed", "--child", str(out), str(settings.workers),
                str(settings.config or ""), *map(str, files)]
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=_child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"scan process failed with exit code {proc.returncode}")
        child = json.loads(out.read_text())
    child["wall_seconds"] = wall
    child["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    child["peak_rss_mb"] = usage.ru_maxrss / 1024
    return child


# --- CPU per stage ------------------------------------------------------------------------------

def stage_cpu(files: list[Path], settings: SpeedSettings, max_pages: int = 40) -> tuple[dict, list]:
    """CPU ms per page of each stage, one thread, on the first pages: a machine's load stretches
    wall times, hardly CPU times. Ingest counts poppler's CPU too (its processes are reaped).
    Also returns the pages' field crops, for `recognizer_speed`."""
    import cv2 as _cv2

    from formreader.align import Aligner
    from formreader.config import load_config
    from formreader.ingest import read_pages
    from formreader.recognize.ensemble import (
        load_reader,  # what `formreader scan` loads
    )
    from formreader.recognize.grammar import Grammar
    from formreader.segment import cut_fields
    from formreader.template import Template

    cfg = load_config(settings.config, {"threads": 1})
    template = Template.load(cfg.template)
    pipe = cfg.pipeline()
    aligner = Aligner(template, pipe.aligner)
    predictor = load_reader(cfg.model, cfg.recognizer())
    spent = dict.fromkeys(("ingest", "align", "segment", "recognize"), 0.0)
    crops, pages = [], 0
    threads = _cv2.getNumThreads()
    _cv2.setNumThreads(1)
    try:
        for f in files:
            if pages >= max_pages:
                break
            c0 = _cpu()
            got = read_pages(f, dpi=pipe.dpi, max_pixels=pipe.max_pixels)
            spent["ingest"] += _cpu() - c0
            for page in got:
                if page.image is None:
                    continue
                pages += 1
                c0 = _cpu()
                result = aligner.align(page.image)
                c1 = _cpu()
                spent["align"] += c1 - c0
                if result.ok:
                    crops += [c for c in cut_fields(result, template, pipe.margin_mm) if not c.blank]
                spent["segment"] += _cpu() - c1
        c0 = _cpu()
        predictor.predict([c.image for c in crops], [Grammar(c.kind, c.choices) for c in crops])
        spent["recognize"] += _cpu() - c0  # normalization, model and decoding
    finally:
        _cv2.setNumThreads(threads)
    return {"pages": pages, "crops": len(crops), **{k: round(1000 * v / max(pages, 1), 1) for k, v in spent.items()}}, crops


def recognizer_speed(crops: list, settings: SpeedSettings) -> dict:
    """Crops per second through the reader `formreader scan` loads, on its device and threads.

    A first batch runs untimed: on CUDA it loads the kernels and lets cuDNN pick its algorithms."""
    from formreader.config import load_config
    from formreader.recognize.ensemble import load_reader
    from formreader.recognize.grammar import Grammar

    cfg = load_config(settings.config, {})
    reader = load_reader(cfg.model, cfg.recognizer())
    images, grammars = [c.image for c in crops], [Grammar(c.kind, c.choices) for c in crops]
    warm = reader.batch_size
    reader.predict(images[:warm], grammars[:warm])
    start = time.perf_counter()
    reader.predict(images, grammars)
    seconds = time.perf_counter() - start
    return {"device": cfg.device, "providers": reader.providers, "crops": len(images),
            "seconds": round(seconds, 3), "crops_per_s": round(len(images) / seconds, 1) if seconds > 0 else 0.0}


def cuda_summary(recognizer: dict, scan: Measure) -> dict | str:
    """The CUDA figures the issue asks for, or why there are none."""
    if "CUDAExecutionProvider" not in recognizer["providers"]:
        return f"not measured (the recognizers ran on {', '.join(recognizer['providers'])}; --device cuda on a GPU machine)"
    return {"scan_pages_per_s": round(scan.pages_per_s, 3), "crops_per_s": recognizer["crops_per_s"]}


# --- start-up ----------------------------------------------------------------------------------

def _timed(cmd: list[str], output: str | None = None) -> float:
    """Wall seconds of a `formreader` command. Exit code 1 with its output written (some page
    failed, every row there) is a finished run; a crash or anything else is an error."""
    if output is not None:
        Path(output).unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=_child_env())
    finished = proc.returncode == 0 or (proc.returncode == 1 and output is not None and Path(output).is_file())
    if not finished:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed (exit {proc.returncode}): {proc.stderr.decode()[-500:]}")
    return time.perf_counter() - start


def startup(one_page: Path, settings: SpeedSettings, repeats: int = 3) -> dict:
    """Fresh processes (best of `repeats`) against the same page scanned in this warm process."""
    from formreader.config import load_config
    from formreader.pipeline import Scanner
    from formreader.recognize.ensemble import (
        load_reader,  # what `formreader scan` loads
    )
    from formreader.template import Template

    extra = ["--config", str(settings.config)] if settings.config else []
    with tempfile.TemporaryDirectory(prefix="formreader-speed-") as tmp:
        help_s = min(_timed([*_formreader(), "--help"]) for _ in range(repeats))
        scan_s = min(_timed([*_formreader(), "scan", str(one_page), "--out", f"{tmp}/one.csv", *extra], f"{tmp}/one.csv")
                     for _ in range(repeats))
    cfg = load_config(settings.config, {"workers": settings.workers})
    scanner = Scanner(Template.load(cfg.template), load_reader(cfg.model, cfg.recognizer()), cfg.pipeline(), workers=cfg.workers)
    list(scanner.scan([one_page]))  # warm: first-call costs are start-up too
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        list(scanner.scan([one_page]))
        warm.append(time.perf_counter() - t0)
    return {"help_seconds": help_s, "scan_one_page_fresh_seconds": scan_s, "scan_one_page_warm_seconds": min(warm),
            "startup_seconds": scan_s - min(warm)}


# --- Tesseract ---------------------------------------------------------------------------------

def tesseract_compare(files: list[Path], settings: SpeedSettings) -> dict:
    """`tesseract PAGE - -l fra` page after page, as a user's shell loop runs it (with its own
    default threads), against one `formreader scan` of the same PNG pages; start-up included."""
    if shutil.which("tesseract") is None:
        return {"skipped": "tesseract is not installed"}
    with tempfile.TemporaryDirectory(prefix="formreader-speed-") as tmp:
        pngs = _first_pages_as_png(files, settings.tesseract_pages, Path(tmp) / "pages", settings.dpi)
        start = time.perf_counter()
        for png in pngs:
            subprocess.run(["tesseract", str(png), "-", "-l", "fra"], capture_output=True, check=False)
        tess = time.perf_counter() - start
        extra = ["--config", str(settings.config)] if settings.config else []
        ours = _timed([*_formreader(), "scan", str(Path(tmp) / "pages"), "--out", f"{tmp}/rows.csv", *extra], f"{tmp}/rows.csv")
    return {"pages": len(pngs), "tesseract_seconds": tess, "formreader_seconds": ours,
            "tesseract_pages_per_s": len(pngs) / tess, "formreader_pages_per_s": len(pngs) / ours,
            "speedup": tess / ours}


def _first_pages_as_png(files: list[Path], count: int, folder: Path, dpi: float) -> list[Path]:
    folder.mkdir(parents=True)
    out: list[Path] = []
    for f in files:
        for image in decode_pages(str(f), dpi):
            if len(out) == count:
                return out
            out.append(folder / f"page_{len(out) + 1:03d}.png")
            cv2.imwrite(str(out[-1]), image)
    return out


# --- the run -----------------------------------------------------------------------------------

def run_speed(inputs: list[Path], settings: SpeedSettings = SpeedSettings(), on_phase=None) -> dict:
    files = discover(inputs)
    if not files:
        raise ValueError(f"no PDF or image files in {', '.join(map(str, inputs))}")
    say = on_phase or (lambda name: None)
    load_before = os.getloadavg()
    # Decode-only runs just before and just after the scan and counts as their mean: the load of a
    # shared machine drifts, and bracketing cancels a steady drift.
    say("decode-only")
    decode_before = decode_only(files, settings.workers, settings.dpi)
    say("scan")
    scan = scan_fresh(files, settings)
    say("decode-only, again")
    decode_after = decode_only(files, settings.workers, settings.dpi)
    decode = Measure(decode_before.pages, (decode_before.seconds + decode_after.seconds) / 2,
                     (decode_before.cpu_seconds + decode_after.cpu_seconds) / 2,
                     decode_before.peak_rss_mb)  # later, the scan process is among the children too
    say("CPU per stage")
    cpu_stages, crops = stage_cpu(files, settings)
    say("recognizer crops/s")
    recognizer = recognizer_speed(crops, settings)
    say("start-up")
    one_page = next((f for f in files if f.suffix.lower() in IMAGE_SUFFIXES), files[0])
    start = startup(one_page, settings)
    tess = None
    if settings.tesseract_pages:
        say("tesseract")
        tess = tesseract_compare(files, settings)
    # CPU of the scan itself (imports and model loading are start-up, reported there).
    scan_measure = Measure(scan["pages"], scan["scan_seconds"], scan["scan_cpu_seconds"], scan["peak_rss_mb"])
    with_startup = Measure(scan["pages"], scan["wall_seconds"], scan["cpu_seconds"], scan["peak_rss_mb"])
    pages = max(scan["pages"], 1)
    report = {
        "files": len(files),
        "pages": decode.pages,
        "workers": settings.workers,
        "cpus": os.cpu_count(),
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
        "decode_only": {**decode.as_dict(), "pages_per_s_before_scan": round(decode_before.pages_per_s, 3),
                        "pages_per_s_after_scan": round(decode_after.pages_per_s, 3)},
        "scan": {**scan_measure.as_dict(), "failed_pages": scan["failed"], "load_seconds": round(scan["load_seconds"], 3)},
        "scan_with_startup": with_startup.as_dict(),
        "ratio": round(scan_measure.pages_per_s / decode.pages_per_s, 3) if decode.pages_per_s else None,
        "ratio_with_startup": round(with_startup.pages_per_s / decode.pages_per_s, 3) if decode.pages_per_s else None,
        "cpu_ratio": round(decode.cpu_ms_per_page / scan_measure.cpu_ms_per_page, 3) if scan_measure.cpu_ms_per_page else None,
        # wall time per stage inside the scan, summed over its worker threads (stretched by load)
        "stage_ms_per_page": {s: round(1000 * v / pages, 1) for s, v in scan["stage_seconds"].items()},
        "stage_cpu_ms_per_page": cpu_stages,
        "startup": {k: round(v, 3) for k, v in start.items()},
        "tesseract": {k: round(v, 3) if isinstance(v, float) else v for k, v in tess.items()} if tess else None,
        "recognizer": recognizer,
        "cuda": cuda_summary(recognizer, scan_measure),
    }
    return report


def config_toml(cfg) -> str:
    """A resolved Config as a TOML file's text, so fresh processes run with the very same settings."""
    lines = ["[formreader]"]
    for key, value in asdict(cfg).items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value.resolve())
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def make_set(folder: Path, pages: int = 200, seed: int = 5, data_root: Path | None = None):
    """The mixed speed set: PDF (1-3 pages), JPEG, PNG, TIFF in turn, every page at 200 dpi.

    Real handwriting (dev `val` crops) when the shared data is there, else the shared fonts.
    """
    from formreader.commands.synth import run_synth
    from formreader.paths import shared_root

    root = shared_root(data_root)
    names = "kaggle-val" if (root / "data" / "kaggle-names").is_dir() else "fonts"
    return run_synth(Path(folder), pages, "mild", names, "reserved", root, formats=SET_FORMATS, seed=seed, dpi=200.0)


def speed_table(report: dict):
    """Two tables: throughput against decode-only, then stages, start-up and baselines."""
    from rich.console import Group
    from rich.table import Table

    d, s, w = report["decode_only"], report["scan"], report["scan_with_startup"]
    load = report["load_average"]
    main = Table(title=f"speed: {report['pages']} pages, {report['files']} files, {report['workers']} workers, "
                       f"load {load['before'][0]:.1f}→{load['after'][0]:.1f}")
    for col in ("", "pages/s", "CPU ms/page", "peak MB", "vs decode"):
        main.add_column(col, justify="left" if not col else "right")
    main.add_row("decode only", f"{d['pages_per_s']:.2f}", f"{d['cpu_ms_per_page']:.0f}", f"{d['peak_rss_mb']:.0f}", "1.00")
    main.add_row("scan", f"{s['pages_per_s']:.2f}", f"{s['cpu_ms_per_page']:.0f}", f"{s['peak_rss_mb']:.0f}",
                 f"{report['ratio']:.2f} (CPU {report['cpu_ratio']:.2f})")
    main.add_row("scan + start-up", f"{w['pages_per_s']:.2f}", "", "", f"{report['ratio_with_startup']:.2f}")
    details = Table(show_header=False)
    details.add_column("what")
    details.add_column("value", justify="right")
    details.add_row("decode-only pages/s, before / after the scan", f"{d['pages_per_s_before_scan']:.2f} / {d['pages_per_s_after_scan']:.2f}")
    cpu = report["stage_cpu_ms_per_page"]
    details.add_row(f"CPU ms/page per stage (1 thread, {cpu['pages']} pages)",
                    "  ".join(f"{k} {cpu[k]:.0f}" for k in ("ingest", "align", "segment", "recognize")))
    details.add_row("scan stage wall ms/page (summed over workers)", "  ".join(f"{k} {v:.0f}" for k, v in report["stage_ms_per_page"].items()))
    st = report["startup"]
    details.add_row("formreader --help", f"{st['help_seconds']:.2f} s")
    details.add_row("scan 1 page: fresh process / warm", f"{st['scan_one_page_fresh_seconds']:.2f} s / {st['scan_one_page_warm_seconds']:.3f} s")
    t = report.get("tesseract")
    if t and "skipped" not in t:
        details.add_row(f"{t['pages']} PNG pages: tesseract / formreader", f"{t['tesseract_pages_per_s']:.2f} / "
                        f"{t['formreader_pages_per_s']:.2f} pages/s = {t['speedup']:.1f}x")
    elif t:
        details.add_row("tesseract", t["skipped"])
    r = report["recognizer"]
    details.add_row(f"recognizer alone, {r['crops']} crops ({'/'.join(p.removesuffix('ExecutionProvider') for p in r['providers'])})",
                    f"{r['crops_per_s']:.0f} crops/s")
    cuda = report["cuda"]
    details.add_row("CUDA", cuda if isinstance(cuda, str) else
                    f"scan {cuda['scan_pages_per_s']:.2f} pages/s, recognizer {cuda['crops_per_s']:.0f} crops/s")
    return Group(main, details)


if __name__ == "__main__":  # the scan process of `scan_fresh`
    if len(sys.argv) >= 5 and sys.argv[1] == "--child":
        out_path, n_workers, config_path, *paths = sys.argv[2:]
        scan_child(paths, int(n_workers), config_path or None, out_path)
    else:
        sys.exit("internal entry point of `formreader benchmark --speed`")
