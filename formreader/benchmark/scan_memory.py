"""Peak memory of `formreader scan` on one long file against a one-page file of the same kind.

    python -m formreader.benchmark.scan_memory                 # 300-page PDF and 500-frame TIFF (several minutes on 2 cores)
    python -m formreader.benchmark.scan_memory --pages 40 --frames 60   # quicker

Builds the inputs in out/scan-memory/ (generated forms: the bundled template filled and 'scanned'),
runs `python -m formreader scan FILE --out ...` on each in a fresh process with the default model
and settings, and prints the peak RSS of that process (and of its poppler children) as a table
and JSON. Issue 14 / 10: a long file must stay within 1.5x of a one-page file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: inputs go to out/

# Runs the CLI, then reports this process's and its children's peak RSS (Linux: kilobytes).
WRAPPER = """
import atexit, json, re, resource, runpy, sys, threading, time
peak = {"RssAnon": 0, "RssFile": 0}
def sample():  # anonymous (our memory) and file-backed (mapped files, e.g. libtiff's) resident pages
    while True:
        text = open("/proc/self/status").read()
        for key in peak:
            peak[key] = max(peak[key], int(re.search(key + r":\\s+(\\d+)", text).group(1)))
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
def report():
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.__stderr__.write("PEAK " + json.dumps({"self_mb": self_kb / 1024, "children_mb": kids_kb / 1024,
                         "anon_mb": peak["RssAnon"] / 1024, "file_mb": peak["RssFile"] / 1024}) + "\\n")
atexit.register(report)
sys.argv = ["formreader"] + sys.argv[1:]
runpy.run_module("formreader", run_name="__main__")
"""

def build(folder: Path, pages: int, frames: int) -> dict[str, Path]:
    from PIL import Image

    from formreader.template import Template
    from tests.forms import Scan, fill, scan

    folder.mkdir(parents=True, exist_ok=True)
    tpl = Template.load()
    names = [{"NOM": n, "PRENOM": p, "DATE": d} for n, p, d in
             [("DUPONT", "MARIE", "12/03/2011"), ("MARTIN", "LUC", "01/02/1999"), ("PETIT", "ANNE", "30/11/1987")]]
    forms = [Image.fromarray(scan(fill(tpl, names[i % 3]), Scan(angle=(i % 5) - 2, noise=4), seed=i)) for i in range(5)]
    files = {
        "pdf-1": folder / "one.pdf",
        f"pdf-{pages}": folder / f"long-{pages}.pdf",
        "tif-1": folder / "one.tif",
        f"tif-{frames}": folder / f"long-{frames}.tif",
    }
    if not files["pdf-1"].exists():
        forms[0].save(files["pdf-1"], resolution=200)
    if not files[f"pdf-{pages}"].exists():
        forms[0].save(files[f"pdf-{pages}"], save_all=True, append_images=[forms[i % 5] for i in range(1, pages)], resolution=200)
    bilevel = [f.convert("1") for f in forms]  # what document feeders write: CCITT G4 bilevel TIFF
    if not files["tif-1"].exists():
        bilevel[0].save(files["tif-1"], compression="group4", dpi=(200, 200))
    if not files[f"tif-{frames}"].exists():
        bilevel[0].save(files[f"tif-{frames}"], save_all=True, append_images=[bilevel[i % 5] for i in range(1, frames)],
                        compression="group4", dpi=(200, 200))
    return files


def measure(path: Path, out: Path, extra: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "scan", str(path), "--out", str(out), *extra], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    peak = next((json.loads(line[5:]) for line in proc.stderr.splitlines() if line.startswith("PEAK ")), None)
    if peak is None or proc.returncode not in (0, 1):
        raise SystemExit(f"scan {path} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    rows = sum(1 for _ in out.open()) - 1
    return {**peak, "rows": rows, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--folder", type=Path, default=ROOT / "out" / "scan-memory")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("scan_options", nargs="*", help="options passed to every `formreader scan` (after --)")
    args = parser.parse_args()
    files = build(args.folder, args.pages, args.frames)
    results = {name: measure(path, args.folder / f"{name}.csv", args.scan_options) for name, path in files.items()}
    print(f"{'file':<10} {'rows':>5} {'peak RSS MB':>12} {'ratio':>6} {'peak anon MB':>13} {'ratio':>6} "
          f"{'peak file-backed MB':>20} {'poppler MB':>11} {'s':>7}")
    for name, r in results.items():
        one = results[name.split("-")[0] + "-1"]
        print(f"{name:<10} {r['rows']:>5} {r['self_mb']:>12.0f} {r['self_mb'] / one['self_mb']:>6.2f} {r['anon_mb']:>13.0f} "
              f"{r['anon_mb'] / one['anon_mb']:>6.2f} {r['file_mb']:>20.0f} {r['children_mb']:>11.0f} {r['seconds']:>7.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
