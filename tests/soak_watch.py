"""Soak test of `formreader watch`, by hand: N files into a live daemon, then pages/s and resident memory.

    python -m tests.soak_watch --files 1000                      # bundled template, 200 dpi pages
    python -m tests.soak_watch --files 1000 --model path/to.onnx # another recognizer
    python -m tests.soak_watch --files 100 --small               # quick: 100 dpi pages

Half the files wait in the inbox before the daemon starts, the rest are dropped while it runs
(every 7th as a slow copy), ~2% are unreadable or not forms. The daemon runs as a real subprocess;
its RSS is sampled at start (model and template loaded, no file read), every second, and at the
end (everything processed, daemon idle). Without --model the bundled CRNN is used when present,
else the tiny random test model (throughput then excludes a real network's cost).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from formreader.recognize.predictor import DEFAULT_MODEL
from formreader.template import DEFAULT_TEMPLATE_DIR
from formreader.watch.status import read_status
from tests.watch_helpers import (
    FormMaker,
    bad_files,
    drop,
    huge_image,
    long_pdf,
    read_rows,
    row_keys,
    settled_names,
    slow_copy,
    small_template,
    start_daemon,
    watch_command,
)


def _model(arg: str | None, root: Path) -> Path:
    if arg:
        return Path(arg)
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    from tests.tinymodel import build_tiny_model

    return build_tiny_model(root / "tiny.onnx")


def _plan(maker: FormMaker, n_files: int) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
    files, pages = [], {}
    for n in range(n_files):
        if n % 50 == 25:  # ~2% unreadable or not a form, each with its own content
            bad = [kv for kv in bad_files(maker, n).items() if n == 25 or kv[0] != "empty.pdf"]
            name, (data, _) = bad[(n // 50) % len(bad)]
            name = f"bad{n:05d}-{name}"
            files.append((name, data))
            pages[name] = 1
            continue
        name, data, count = maker.make(n)
        files.append((name, data))
        pages[name] = count
    return files, pages


def run_soak(n_files: int, root: Path, model: Path, template_dir: Path, workers: int = 2, timeout: float = 3600,
             oversized: bool = False) -> dict:
    inbox, out, log = root / "inbox", root / "rows.jsonl", root / "daemon.log"
    inbox.mkdir(parents=True)
    maker = FormMaker(template_dir)
    files, pages = _plan(maker, n_files)
    preload, live = files[: n_files // 2], files[n_files // 2 :]
    if oversized:  # in the middle of the live drops: a 300-page PDF and a 59-megapixel image
        live[len(live) // 2 : len(live) // 2] = [("huge-300p.pdf", long_pdf(300)), ("huge-59mp.png", huge_image())]
        pages.update({"huge-300p.pdf": 300, "huge-59mp.png": 1})
    for name, data in preload:
        drop(inbox, name, data)
    cmd = watch_command(inbox, out, template_dir, model, "--settle", "0.5", "--latency", "1", "--workers", str(workers),
                        "--empty-grace", "1")
    proc = start_daemon(cmd, log)
    ps = psutil.Process(proc.pid)
    while "watching" not in (log.read_text() if log.exists() else ""):
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    t0 = time.monotonic()
    rss_start = ps.memory_info().rss
    dropper = threading.Thread(target=_drop_live, args=(inbox, live))
    dropper.start()
    samples = [rss_start]
    by_quarter: dict[int, float] = {}  # RSS when 25/50/75/100% of the files are through: plateau or leak?
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        samples.append(ps.memory_info().rss)
        through = len(settled_names(inbox))
        for q in (25, 50, 75, 100):
            if q not in by_quarter and through * 100 >= q * len(pages):
                by_quarter[q] = round(samples[-1] / 2**20, 1)
        if through >= len(pages):
            break
    elapsed = time.monotonic() - t0
    dropper.join()
    time.sleep(2.0)  # idle a moment: end RSS is the daemon at rest after the load
    rss_end = ps.memory_info().rss
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
    rows = read_rows(out)
    counts = Counter(row_keys(rows))
    want = Counter((name, p) for name, n in pages.items() for p in range(1, n + 1))
    status = read_status(inbox / ".formreader")
    return {
        "files": len(pages), "pages_expected": sum(want.values()), "rows": len(rows),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1), "missing": sum((want - counts).values()),
        "done": status.counts["done"], "failed": status.counts["failed"], "seconds": round(elapsed, 1),
        "pages_per_s": round(len(rows) / elapsed, 2), "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_peak_mb": round(max(samples) / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_by_quarter_mb": by_quarter,
        "exit_code": rc, "model": str(model), "template": str(template_dir), "oversized": oversized,
    }


def _drop_live(inbox: Path, files: list[tuple[str, bytes]]) -> None:
    for i, (name, data) in enumerate(files):
        if i % 7 == 3:
            threading.Thread(target=slow_copy, args=(inbox, name, data, 4, 0.1)).start()
        else:
            drop(inbox, name, data)
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--model", help="ONNX recognizer (default: bundled CRNN if present, else the tiny test model)")
    ap.add_argument("--small", action="store_true", help="100 dpi pages instead of the bundled 200 dpi template")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--root", type=Path, help="keep the run here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    ap.add_argument("--oversized", action="store_true", help="add a 300-page PDF and a 59-megapixel image mid-run")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="formreader-soak-") as tmp:
        root = args.root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        template_dir = small_template(root / "template") if args.small else DEFAULT_TEMPLATE_DIR
        summary = run_soak(args.files, root, _model(args.model, root), template_dir, args.workers,
                           oversized=args.oversized)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = summary["duplicates"] == 0 and summary["missing"] == 0 and summary["rows"] == summary["pages_expected"]
    return 0 if ok and summary["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
