"""Test-time augmentation for the CRNN, measured on dev `val` (300 real crops).

    python -m train.experiments.tta [--model crnn.onnx] [--threads 2]

A second view of each crop (stretched or with thicker strokes) is read by the same CRNN and
combined with the plain view exactly as the run-time ensemble combines two recognizers
(`formreader.recognize.ensemble.FieldReader`: candidates of both, summed CTC log-likelihoods).
Compared with the plain CRNN read by the same reader (beam candidates, no second view), so the
difference is the augmentation alone. Field kind `text`, no lexicon. Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the checkout: runs/ and the shipped model

from formreader.paths import shared_root
from formreader.recognize.ensemble import FieldReader
from formreader.recognize.predictor import Predictor, PreProcessor, RecognizerSettings, load_predictor
from train import sources
from train.metrics import name_form, score

VIEWS = {
    "stretch 1.2": lambda g: cv2.resize(g, (int(g.shape[1] * 1.2), g.shape[0]), interpolation=cv2.INTER_LINEAR),
    "squeeze 0.85": lambda g: cv2.resize(g, (max(1, int(g.shape[1] * 0.85)), g.shape[0]), interpolation=cv2.INTER_AREA),
    "thicker ink": lambda g: cv2.erode(g, np.ones((2, 2), np.uint8)),
}


class ViewPreProcessor(PreProcessor):
    """The model's own preprocessing after a fixed change of the gray crop."""

    def __init__(self, base: PreProcessor, view):
        super().__init__(base.spec)
        self.view = view

    def normalize(self, crop):
        return super().normalize(self.view(crop))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    crnn = load_predictor(args.model, RecognizerSettings(device="cpu", threads=args.threads))
    val = sources.kaggle_split(shared_root(), "val", crnn.post_processor.alphabet)
    truths = [name_form(t) for t in val.texts]
    report = {}
    readers = {"plain (beam candidates)": FieldReader(crnn, None, "off", decoder="beam")}
    for name, view in VIEWS.items():
        other = Predictor(ViewPreProcessor(crnn.pre_processor, view), crnn.model, crnn.post_processor, crnn.batch_size)
        readers[f"plain + {name}"] = FieldReader(crnn, other, "always", decoder="beam")
    for name, reader in readers.items():
        t0 = time.perf_counter()
        readings, _ = reader.predict(val.images, ["text"] * len(val.images))
        result = score([name_form(r.text) for r in readings], truths)
        report[name] = {"cer": round(result.cer, 4), "exact": round(result.exact, 4),
                        "seconds": round(time.perf_counter() - t0, 1)}
        print(name, report[name], flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
