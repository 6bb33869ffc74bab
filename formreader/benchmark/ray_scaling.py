"""Local engine vs Ray engine on one machine, same set, same run; Ray start-up; per-stage costs.

    python -m formreader.benchmark.ray_scaling SET [--repeats 2] [--report out/ray_scaling.json]

SET is a folder of forms (e.g. `formreader synth out/ray-bench --pages 40 --names fonts`).
Every configuration runs through the real CLI in a fresh process, interleaved, `--repeats` times:
local and Ray with 1 and 2 preparing workers, on SET and on a one-page copy of it. The one-page
run is the fixed cost (process, model, Ray start-up, actor start-up); (pages - 1) / (wall - wall
of one page) is the marginal throughput. Per-stage costs (the input of README's scaling model)
come from the local pipeline in this process: seconds per page per stage, and the bytes a page
puts in Ray's object store (pickled PreparedPage) and brings back to the driver (PageRecord).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: reports go to out/

from formreader.ingest import discover  # noqa: E402
from formreader.pipeline import Scanner, finish_pages, prepare_file  # noqa: E402
from formreader.recognize.predictor import RecognizerSettings, load_predictor  # noqa: E402
from formreader.template import Template  # noqa: E402
from formreader.writers import write_records  # noqa: E402

CONFIGS = [("local", 1), ("local", 2), ("ray", 1), ("ray", 2)]


def cli_run(inputs: Path, engine: str, workers: int, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "formreader", "scan", str(inputs), "--out", str(out), "--engine", engine, "--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall


def stage_costs(files: list[Path]) -> dict:
    """Seconds per page per stage (one worker) and the bytes a page moves between Ray actors."""
    template = Template.load()
    predictor = load_predictor()
    scanner = Scanner(template, predictor, workers=1)
    records = list(scanner.scan(files))
    pages = len(records)
    per_stage = {s: sum(r.timings.seconds.get(s, 0.0) for r in records) / pages for s in records[0].timings.seconds}
    prepared = [p for f in files for p in prepare_file(f, template, scanner.settings, scanner.aligner)]
    blobs = [pickle.dumps(p, protocol=5) for p in prepared]
    # Recognition split: what stays on a CPU with a GPU (crop normalization, decoding) vs the CRNN.
    crops = [c.image for p in prepared for c in p.crops if not c.blank]
    one_thread = load_predictor(None, RecognizerSettings(threads=1))
    t0 = time.perf_counter()
    batches = [one_thread.pre_processor(crops[i : i + 64]) for i in range(0, len(crops), 64)]
    t1 = time.perf_counter()
    probs = [one_thread.model(b) for b in batches]
    t2 = time.perf_counter()
    for p in probs:
        one_thread.post_processor(p)
    split = {"normalize": (t1 - t0) / pages, "crnn_1_thread": (t2 - t1) / pages, "decode": (time.perf_counter() - t2) / pages}
    finish_pages(prepared, predictor, scanner.settings)
    # The driver: unpickle each record, hold it until the single write, write it.
    record_blobs = [pickle.dumps(p.record, protocol=5) for p in prepared] * 250
    t0 = time.perf_counter()
    held = [pickle.loads(b) for b in record_blobs]
    unpickle = (time.perf_counter() - t0) / len(held)
    tracemalloc.start()
    held = [pickle.loads(b) for b in record_blobs]
    memory = tracemalloc.get_traced_memory()[0] / len(held)
    tracemalloc.stop()
    write = {}
    for fmt in ("csv", "parquet"):
        t0 = time.perf_counter()
        write_records(Path(tempfile.mkdtemp()) / f"r.{fmt}", held, template.layout.field_names)
        write[fmt] = (time.perf_counter() - t0) / len(held)
    return {
        "pages": pages,
        "seconds_per_page": per_stage,
        "recognition_split_seconds_per_page": split,
        "prepared_page_bytes": statistics.mean(map(len, blobs)),
        "record_bytes": statistics.mean(map(len, record_blobs)),
        "driver_unpickle_s_per_record": unpickle,
        "driver_bytes_per_held_record": memory,
        "driver_write_s_per_record": write,
    }


def ray_start_stop(record_bytes: int) -> dict:
    """Start and stop a local Ray; in between, what the driver pays per row it pulls from Ray Data."""
    import numpy as np
    import ray
    import ray.data

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    t1 = time.perf_counter()
    ray.data.DataContext.get_current().enable_progress_bars = False
    blob = os.urandom(record_bytes)

    def rows(batch):
        out = np.empty(len(batch["id"]), dtype=object)
        out[:] = [blob] * len(out)
        return {"file_idx": batch["id"], "record": out}

    ds = ray.data.range(20_000, override_num_blocks=20).map_batches(rows, batch_size=1000, batch_format="numpy").materialize()
    t2 = time.perf_counter()
    n = sum(1 for _ in ds.iter_rows())
    row = (time.perf_counter() - t2) / n
    t3 = time.perf_counter()
    ray.shutdown()
    return {"ray_init_s": t1 - t0, "ray_shutdown_s": time.perf_counter() - t3, "driver_iter_rows_s_per_row": row}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--report", type=Path, default=ROOT / "out" / "ray_scaling.json")
    args = ap.parse_args()
    files = discover([args.set])
    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    one = work / "one"
    one.mkdir()
    first = next(f for f in files if f.suffix == ".png")
    shutil.copy(first, one / first.name)
    report: dict = {"set": str(args.set), "files": len(files), "loadavg_start": os.getloadavg(), "runs": []}
    report["stages"] = stage_costs(files)
    pages = report["stages"]["pages"]
    print(f"{len(files)} files, {pages} pages; per-page stage seconds: "
          + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in report["stages"]["seconds_per_page"].items()), flush=True)
    report["ray_start"] = ray_start_stop(int(report["stages"]["record_bytes"]))
    st = report["stages"]
    print("recognition split per page: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in st["recognition_split_seconds_per_page"].items()))
    print(f"object store per page {st['prepared_page_bytes'] / 1e6:.2f} MB; driver per record: {st['record_bytes']:.0f} B pickled, "
          f"unpickle {st['driver_unpickle_s_per_record'] * 1e6:.0f} us, held {st['driver_bytes_per_held_record']:.0f} B, "
          + ", ".join(f"write {k} {v * 1e6:.0f} us" for k, v in st["driver_write_s_per_record"].items()), flush=True)
    rs = report["ray_start"]
    print(f"ray.init {rs['ray_init_s']:.1f} s, shutdown {rs['ray_shutdown_s']:.1f} s, "
          f"driver iter_rows {rs['driver_iter_rows_s_per_row'] * 1e6:.1f} us/row", flush=True)
    for rep in range(args.repeats):
        for engine, workers in CONFIGS:
            for name, inputs in (("one", one), ("set", args.set)):
                load = os.getloadavg()[0]
                wall = cli_run(inputs, engine, workers, work / f"{engine}{workers}-{name}.csv")
                report["runs"].append({"rep": rep, "engine": engine, "workers": workers, "input": name, "wall_s": wall, "load1": load})
                print(f"rep {rep} {engine:5} workers={workers} {name:3}  {wall:6.1f} s  (load {load:.1f})", flush=True)
    report["loadavg_end"] = os.getloadavg()
    same = {(e, w): (work / f"{e}{w}-set.csv").read_text() for e, w in CONFIGS}
    report["identical_outputs"] = len(set(same.values())) == 1
    rows = []
    for engine, workers in CONFIGS:
        runs = [r for r in report["runs"] if (r["engine"], r["workers"]) == (engine, workers)]
        one_s = statistics.median(r["wall_s"] for r in runs if r["input"] == "one")
        set_s = statistics.median(r["wall_s"] for r in runs if r["input"] == "set")
        rows.append({"engine": engine, "workers": workers, "one_page_s": one_s, "set_s": set_s,
                     "pages_per_s": pages / set_s, "marginal_pages_per_s": (pages - 1) / max(set_s - one_s, 1e-9)})
    report["table"] = rows
    print(f"\n{pages} pages, median of {args.repeats}; identical outputs: {report['identical_outputs']}")
    print(f"{'engine':8}{'workers':>8}{'1 page s':>10}{'set s':>9}{'pages/s':>9}{'marginal p/s':>14}")
    for r in rows:
        print(f"{r['engine']:8}{r['workers']:>8}{r['one_page_s']:>10.1f}{r['set_s']:>9.1f}{r['pages_per_s']:>9.2f}{r['marginal_pages_per_s']:>14.2f}")
    print(f"load average start {report['loadavg_start']}, end {report['loadavg_end']}")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
