"""Learning from corrections, simulated: an office corrects half of dev `val`, fine-tunes, reads the rest.

    python -m train.experiments.office_finetune --out runs/office [--epochs 6] [--threads 2]

Dev `val` (300 real crops) is split in two fixed halves by file order (even rows A, odd rows B).
Half A plays the clerk's corrections: each crop is saved where `formreader scan --crops` would
have put it (`formreader.pipeline.crop_path`) and its true label goes into a corrections CSV
`file,page,field,value`, exactly what the review page exports. Then, through the real commands:

    python -m train finetune --corrections A.csv --crops crops --output office.onnx
    formreader read B --out before.csv --second-opinion off   (shipped model, the CRNN alone)
    formreader read B --out after.csv --model office.onnx --second-opinion off

and half B is scored before and after. This is a simulation on `val`: the fine-tuned model is
never shipped. Prints a JSON report (also written to OUT/report.json) with the wall times.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: runs/ and the shipped model

from formreader.paths import shared_root
from formreader.pipeline import crop_path


def halves(root: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    with (root / "data" / "kaggle-names" / "dev" / "labels.csv").open(newline="") as fh:
        rows = [(r["FILENAME"], r["IDENTITY"]) for r in csv.DictReader(fh)
                if r["SPLIT"] == "val" and r["IDENTITY"] != "UNREADABLE"]
    rows.sort()
    return rows[0::2], rows[1::2]


def prepare(root: Path, out: Path) -> tuple[Path, Path, Path, list[tuple[str, str]]]:
    images = root / "data" / "kaggle-names" / "dev" / "images"
    a, b = halves(root)
    crops, folder_b = out / "crops", out / "B"
    for d in (crops, folder_b):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    corrections = out / "corrections_A.csv"
    with corrections.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "page", "field", "value"])
        for name, label in a:
            scanned = f"/office/scans/{Path(name).stem}.pdf"  # as if each crop came from a scanned page
            shutil.copy(images / name, crop_path(crops, scanned, 1, "NOM"))
            writer.writerow([scanned, 1, "NOM", "" if label == "EMPTY" else label])
    for name, _ in b:
        shutil.copy(images / name, folder_b / name)
    return corrections, crops, folder_b, b


def run(cmd: list[str]) -> float:
    t0 = time.time()
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.time() - t0


def score_half(read_csv: Path, truth: list[tuple[str, str]]) -> dict:
    from train.metrics import name_form, score

    with read_csv.open(newline="") as fh:
        read = {Path(r["file"]).name: r["text"] for r in csv.DictReader(fh)}
    truths = [name_form("" if t == "EMPTY" else t) for _, t in truth]
    preds = [name_form(read.get(n, "")) for n, _ in truth]
    return asdict(score(preds, truths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "office"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=str(ROOT / "formreader" / "assets" / "models" / "crnn.onnx"))
    parser.add_argument("--second-opinion", default="off", help="as for `formreader read`; off: the CRNN alone")
    args = parser.parse_args()
    root, out = shared_root(), Path(args.out).resolve()
    corrections, crops, folder_b, truth_b = prepare(root, out)
    office = out / "office.onnx"
    shutil.rmtree(out / "run", ignore_errors=True)
    py = sys.executable
    finetune_s = run([py, "-m", "train", "finetune", "--corrections", str(corrections), "--crops", str(crops),
                      "--model", args.model, "--output", str(office), "--run", str(out / "run"),
                      "--set", f"fit.epochs={args.epochs}"])
    read = [py, "-m", "formreader", "read", str(folder_b), "--threads", str(args.threads),
            "--second-opinion", args.second_opinion]
    before_s = run(read + ["--out", str(out / "before_B.csv"), "--model", args.model])
    after_s = run(read + ["--out", str(out / "after_B.csv"), "--model", str(office)])
    report = {
        "corrections_A": sum(1 for _ in corrections.open()) - 1, "crops_B": len(truth_b), "epochs": args.epochs,
        "before_B": score_half(out / "before_B.csv", truth_b), "after_B": score_half(out / "after_B.csv", truth_b),
        "finetune_wall_s": round(finetune_s, 1), "read_B_wall_s": [round(before_s, 1), round(after_s, 1)],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
