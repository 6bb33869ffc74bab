"""Every recognizer setting on the dev `val` name crops, in one process (speed ratios are fair).

    python -m formreader.benchmark.recognizers                      # CRNN, PP-OCR, ensemble, cascade, + names priors
    python -m formreader.benchmark.recognizers --split train --modes default   # where settings are chosen
    python -m formreader.benchmark.recognizers --modes off,always --limit 100
    python -m formreader.benchmark.recognizers --modes ppocr,always --ppocr-model M.onnx   # another second model
    python -m formreader.benchmark.recognizers --modes off,default --model runs/X/model.onnx   # another CRNN

Prints, per setting: exact match, CER, crops/s (blank check, preprocessing, models and decoding,
as `formreader read` does) and its ratio to the CRNN alone, and the share of crops that a review
threshold can keep at 98% exact (the confidence's worth for auto-accept), with that threshold.
The last two columns score the same readings against the labels with the known label errors
fixed (`errata.py`: nine val crops whose label is not what their writing shows).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import pandas as pd

from formreader.benchmark.errata import corrected, load_errata
from formreader.benchmark.metrics import Item, score, threshold_for
from formreader.crops import read_crops
from formreader.fields import normalize_name
from formreader.paths import shared_root
from formreader.recognize.decoding import BUNDLED_LEXICON, Lexicon
from formreader.recognize.ensemble import FieldReader
from formreader.recognize.ppocr import load_ppocr
from formreader.recognize.predictor import RecognizerSettings, load_predictor

# always+lexicon: the Kaggle names list (shared data, not shipped); default: the bundled INSEE names
MODES = ("off", "ppocr", "always", "cascade", "always+lexicon", "default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--split", choices=("val", "train"), default="val",
                        help="dev split: val (the number to report) or train (where settings are chosen; "
                             "the shipped CRNN was trained on it, so its figures flatter the CRNN)")
    parser.add_argument("--limit", type=int, default=0, help="first N crops only (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cascade-below", type=float, default=0.9)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="CRNN to use instead of the bundled one (a candidate to ship)")
    parser.add_argument("--ppocr-model", type=Path, default=None,
                        help="second model to use instead of the bundled one (written by `python -m train second-model`)")
    args = parser.parse_args()

    dev = shared_root(None) / "data" / "kaggle-names" / "dev"
    table = pd.read_csv(dev / "labels.csv", keep_default_na=False)
    table = table[(table["SPLIT"] == args.split) & (table["IDENTITY"] != "UNREADABLE")]
    if args.limit:
        table = table.head(args.limit)
    images = [cv2.imread(str(dev / "images" / f), cv2.IMREAD_GRAYSCALE) for f in table["FILENAME"]]
    errata = load_errata()
    truths = {"labels": _truth(table["IDENTITY"]),
              "errata": _truth(corrected(f, t, errata) for f, t in zip(table["FILENAME"], table["IDENTITY"]))}
    settings = RecognizerSettings(device="cpu", threads=args.threads)
    crnn, ppocr = load_predictor(args.model, settings), load_ppocr(settings, model_path=args.ppocr_model)
    lexicon = Lexicon.load(shared_root(None) / "data" / "kaggle-names" / "names.csv")

    readers = {
        "off": FieldReader(crnn, second_opinion="off"),
        "ppocr": ppocr,
        "always": FieldReader(crnn, ppocr, "always", decoder="beam", beam_width=settings.beam_width),
        "cascade": FieldReader(crnn, ppocr, "cascade", args.cascade_below, beam_width=settings.beam_width),
        "always+lexicon": FieldReader(crnn, ppocr, "always", decoder="beam", beam_width=settings.beam_width, lexicon=lexicon),
        "default": FieldReader(crnn, ppocr, "always", decoder="beam", beam_width=settings.beam_width,
                               lexicon=Lexicon.load(BUNDLED_LEXICON)),
    }
    report, base = {}, None
    print(f"{len(images)} dev {args.split} crops, {args.threads} threads")
    print(f"{'setting':16} {'exact':>7} {'CER':>6} {'crops/s':>8} {'vs CRNN':>8} {'kept@98%':>9} {'threshold':>10}"
          f"  errata: {'exact':>6} {'CER':>6} {'kept@98%':>9}")
    for mode in args.modes.split(","):
        start = time.perf_counter()
        results, _ = read_crops(images, readers[mode], "raw" if mode == "ppocr" else "name")
        rate = len(images) / (time.perf_counter() - start)
        preds = [normalize_name(r.text) for r in results]
        s, point = _scored(truths["labels"], preds, results)
        fixed, fixed_point = _scored(truths["errata"], preds, results)
        base = base or (rate if mode == "off" else None)
        report[mode] = {"exact": round(s.exact_match, 4), "cer": round(s.cer, 4), "crops_per_s": round(rate, 2),
                        "kept_at_98": round(point.coverage, 4) if point else 0.0,
                        "threshold_98": round(point.threshold, 6) if point else None,
                        "errata": {"exact": round(fixed.exact_match, 4), "cer": round(fixed.cer, 4),
                                   "kept_at_98": round(fixed_point.coverage, 4) if fixed_point else 0.0}}
        ratio = f"{rate / base:.2f}x" if base else "—"
        thr = f"{point.threshold:.4g}" if point else "—"
        print(f"{mode:16} {100 * s.exact_match:6.1f}% {100 * s.cer:5.2f}% {rate:8.1f} {ratio:>8} {_kept(point):>9} {thr:>10}"
              f"          {100 * fixed.exact_match:5.1f}% {100 * fixed.cer:5.2f}% {_kept(fixed_point):>9}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _truth(labels) -> list[str]:
    return ["" if t == "EMPTY" else normalize_name(t) for t in labels]


def _scored(truth: list[str], preds: list[str], results):
    items = [Item(str(i), "NAME", t, p, r.confidence, False) for i, (t, p, r) in enumerate(zip(truth, preds, results))]
    return score(list(zip(truth, preds))), threshold_for(items, 0.98)


def _kept(point) -> str:
    return f"{100 * point.coverage:.1f}%" if point else "—"


if __name__ == "__main__":
    main()
