"""`python -m train evaluate`: what the shipped ONNX model scores, decoded as the runtime does.

- val: the 300 dev `val` crops (never trained on): CER / exact for greedy, beam, beam+lexicon.
- dates: DD/MM/YYYY crops composed from the reserved MNIST tail (never trained on).
- speed: onnxruntime crops/s at batch 64 on N threads (model only, and with preprocessing+greedy).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from formreader.preprocess import normalize_crop, to_batch
from formreader.recognize.decoding import Lexicon, beam_decode, greedy_decode
from formreader.recognize.spec import METADATA_KEY, ModelSpec
from train import sources
from train.metrics import name_form, score
from train.synth import Synthesizer

DATE_SEED = 20240601
DATE_COUNT = 1000


class OnnxReader:
    """Thin onnxruntime wrapper: gray crops -> (N, T, C) probabilities, in batches of 64."""

    def __init__(self, path: Path, threads: int = 2):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = ModelSpec.from_json(meta[METADATA_KEY], str(path))
        self.input_name = self.session.get_inputs()[0].name

    def probs(self, crops: list[np.ndarray], batch: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(crops), batch):
            x = to_batch([normalize_crop(c, self.spec.input) for c in crops[i:i + batch]], self.spec.input)
            out.append(self.session.run(None, {self.input_name: x})[0])
        return np.concatenate(out)


def resolve_lexicon(arg: str | None, root: Path) -> Lexicon | None:
    if not arg or arg == "none":
        return None
    path = root / "data" / "kaggle-names" / "names.csv" if arg == "default" else Path(arg)
    return Lexicon.load(path) if path.exists() else None


def evaluate_names(reader: OnnxReader, images: list[np.ndarray], truths: list[str], lexicon: Lexicon | None) -> dict:
    alphabet = reader.spec.alphabet
    probs = reader.probs(images)
    truths = [name_form(t) for t in truths]
    decoders = {"greedy": lambda p: greedy_decode(p, alphabet), "beam": lambda p: beam_decode(p, alphabet)}
    if lexicon is not None:
        decoders["beam+lexicon"] = lambda p: beam_decode(p, alphabet, lexicon=lexicon)
    report = {}
    for name, decode in decoders.items():
        preds = [name_form(decode(p)[0]) for p in probs]
        report[name] = asdict(score(preds, truths))
        if lexicon is not None:  # split by whether the true name is in the lexicon
            known = [i for i, t in enumerate(truths) if t in lexicon]
            unknown = [i for i in range(len(truths)) if i not in set(known)]
            for label, idx in (("known", known), ("unknown", unknown)):
                report[name][f"exact_{label}"] = score([preds[i] for i in idx], [truths[i] for i in idx]).exact
        report[name]["samples"] = [(t, p) for t, p in zip(truths, preds) if t != p][:40]
    return report


def date_crops(root: Path, reserved: int = 10000, count: int = DATE_COUNT) -> tuple[list[np.ndarray], list[str]]:
    """Date crops from the reserved MNIST tail (training uses only the images before it)."""
    x, y = sources.load_mnist(root)
    synth = Synthesizer([], [], x[-reserved:], y[-reserved:])
    rng = np.random.default_rng(DATE_SEED)
    pairs = [synth.mnist_date_crop(rng) for _ in range(count)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def evaluate_dates(reader: OnnxReader, root: Path) -> dict:
    images, truths = date_crops(root)
    probs = reader.probs(images)
    report = {}
    for name, decode in {"greedy": greedy_decode, "beam": beam_decode}.items():
        preds = [decode(p, reader.spec.alphabet)[0] for p in probs]
        report[name] = asdict(score(preds, truths))
        report[name]["samples"] = [(t, p) for t, p in zip(truths, preds) if t != p][:10]
    return report


def evaluate_dates_with_grammar(model: Path, root: Path, threads: int) -> dict:
    """The same date crops read as the runtime reads a `date` field: the date grammar, with the
    CRNN alone (`off`), the date expert in its place (`off_expert`), and the expert with the
    PP-OCRv5 second opinion (`always_expert`, the default). Scored on the ISO date."""
    from formreader.fields import parse_date
    from formreader.recognize.ensemble import load_reader
    from formreader.recognize.predictor import RecognizerSettings

    images, truths = date_crops(root)
    iso = [parse_date(t)[0] for t in truths]
    report = {}
    for mode, experts, key in (("off", "none", "off"), ("off", "bundled", "off_expert"), ("always", "bundled", "always_expert")):
        reader = load_reader(model, RecognizerSettings(device="cpu", threads=threads, second_opinion=mode, experts=experts))
        start = time.perf_counter()
        readings, _ = reader.predict(images, ["date"] * len(images))
        seconds = time.perf_counter() - start
        preds = [parse_date(r.text)[0] for r in readings]
        report[f"grammar_{key}"] = {**asdict(score(preds, iso)), "crops_per_s": round(len(images) / seconds, 1),
                                    "samples": [(t, r.raw, r.text) for t, p, r in zip(iso, preds, readings) if t != p][:10]}
    return report


def measure_speed(reader: OnnxReader, images: list[np.ndarray], repeats: int = 5) -> dict:
    crops = (images * (64 // max(len(images), 1) + 1))[:64]
    x = to_batch([normalize_crop(c, reader.spec.input) for c in crops], reader.spec.input)
    reader.session.run(None, {reader.input_name: x})
    t0 = time.perf_counter()
    for _ in range(repeats):
        reader.session.run(None, {reader.input_name: x})
    model_rate = 64 * repeats / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(repeats):
        probs = reader.probs(crops)
        [greedy_decode(p, reader.spec.alphabet) for p in probs]
    full_rate = 64 * repeats / (time.perf_counter() - t0)
    return {"batch": 64, "model_crops_per_s": round(model_rate, 1), "end_to_end_greedy_crops_per_s": round(full_rate, 1)}


def score_read_csv(csv_path: Path, root: Path, alphabet: str) -> dict:
    """Score a `formreader read` output CSV (file,text,...) against the dev val labels."""
    import pandas as pd

    table = pd.read_csv(csv_path, keep_default_na=False)
    read = {Path(f).name: str(t) for f, t in zip(table.file, table.text)}
    val = sources.kaggle_split(root, "val", alphabet)
    truths = [name_form(t) for t in val.texts]
    preds = [name_form(read.get(name, "")) for name in val.names]
    missing = sum(name not in read for name in val.names)
    return {**asdict(score(preds, truths)), "missing": missing}


def tune_lexicon(reader: OnnxReader, root: Path, lexicon: Lexicon, weights: list[float]) -> dict:
    """Exact match on the labelled dev *train* split for each lexicon weight (val stays unseen)."""
    train = sources.kaggle_split(root, "train", reader.spec.alphabet)
    probs = reader.probs(train.images)
    truths = [name_form(t) for t in train.texts]
    report = {}
    for weight in weights:
        lexicon.weight = weight
        preds = [name_form(beam_decode(p, reader.spec.alphabet, lexicon=lexicon)[0]) for p in probs]
        report[str(weight)] = asdict(score(preds, truths))
    return report


def run_evaluation(model: Path, root: Path, lexicon_arg: str | None, parts: str, threads: int,
                   read_csv: str | None = None) -> dict:
    reader = OnnxReader(model, threads)
    val = sources.kaggle_split(root, "val", reader.spec.alphabet)
    report: dict = {"model": str(model), "size_mb": round(model.stat().st_size / 1e6, 2), "threads": threads}
    wanted = set(parts.split(","))
    if "val" in wanted:
        report["val"] = evaluate_names(reader, val.images, val.texts, resolve_lexicon(lexicon_arg, root))
    if "tune" in wanted:
        lexicon = resolve_lexicon(lexicon_arg if lexicon_arg != "none" else "default", root)
        report["tune_lexicon_on_train"] = tune_lexicon(reader, root, lexicon, [0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    if "train" in wanted:  # the labelled train split: for tuning decoder settings, never val
        train = sources.kaggle_split(root, "train", reader.spec.alphabet)
        report["train"] = evaluate_names(reader, train.images, train.texts, resolve_lexicon(lexicon_arg, root))
    if "dates" in wanted:
        report["dates"] = evaluate_dates(reader, root)
        report["dates"].update(evaluate_dates_with_grammar(model, root, threads))
    if read_csv:
        report["formreader_read"] = score_read_csv(Path(read_csv), root, reader.spec.alphabet)
    if "speed" in wanted:
        report["speed"] = measure_speed(reader, val.images)
    return report
