"""A date expert next to the CRNN, measured on the 1,000 reserved MNIST date compositions.

    python -m train.experiments.date_expert --expert runs/dates/dates.onnx [--threads 1]

The expert is the CRNN fine-tuned on dates only (`train/configs/dates.json`). Each combination
is read as the runtime reads a `date` field (`formreader.recognize.ensemble.FieldReader`: beam
candidates of every model, the date grammar, summed CTC log-likelihoods) and scored on the ISO
date. The models' probabilities are computed once; the combinations only re-decode them.
Prints one line per combination and a JSON report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from formreader.fields import parse_date
from formreader.paths import shared_root
from formreader.recognize import grammar
from formreader.recognize.ensemble import FieldReader, Folder
from formreader.recognize.ppocr import load_ppocr
from formreader.recognize.predictor import RecognizerSettings, load_predictor
from train.evaluate import date_crops
from train.metrics import score

COMBOS = {"crnn": ("crnn",), "expert": ("expert",), "crnn+expert": ("crnn", "expert"),
          "crnn+ppocr": ("crnn", "ppocr"), "expert+ppocr": ("expert", "ppocr"),
          "crnn+expert+ppocr": ("crnn", "expert", "ppocr")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expert", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--combos", default=",".join(COMBOS))
    args = parser.parse_args()

    settings = RecognizerSettings(device="cpu", threads=args.threads)
    models = {"crnn": load_predictor(None, settings), "expert": load_predictor(args.expert, settings),
              "ppocr": load_ppocr(settings)}
    images, truths = date_crops(shared_root(None))
    iso = [parse_date(t)[0] for t in truths]
    reader = FieldReader(models["crnn"], decoder="beam", second_opinion="off")
    probs, seconds = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        probs[name] = model.probabilities(images, transform=Folder(model.post_processor.alphabet, reader.alphabet))[0]
        seconds[name] = time.perf_counter() - start
    date = grammar.of("date")
    report = {}
    for combo in args.combos.split(","):
        names = COMBOS[combo]
        preds = [parse_date(reader._decode([probs[n][i] for n in names], date).text)[0] for i in range(len(images))]
        s = score(preds, iso)
        report[combo] = {"exact": round(s.exact, 4), "cer": round(s.cer, 4),
                         "model_crops_per_s": round(len(images) / sum(seconds[n] for n in names), 1),
                         "errors": [(t, p) for t, p in zip(iso, preds) if t != p][:12]}
        print(f"{combo:20} exact {100 * s.exact:.1f}%  CER {100 * s.cer:.2f}%", flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
