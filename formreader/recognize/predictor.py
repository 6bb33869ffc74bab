"""Handwriting recognizer: Predictor(pre_processor, model, post_processor), built from the model file.

Each part is a plain callable so tests can swap one (a fake model, a different decoder) and keep
the others. `load_predictor` reads the ONNX metadata (alphabet, input geometry, layout,
normalization, format version) and builds all three to match it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from formreader.errors import ModelError
from formreader.preprocess import InputSpec, normalize_crop, to_batch
from formreader.records import Timings
from formreader.recognize.decoding import greedy_decode_batch
from formreader.recognize.spec import METADATA_KEY, ModelSpec

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "crnn.onnx"


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float
    raw: str | None = None  # the unconstrained reading when a field grammar changed it
    alternatives: tuple[str, ...] = ()  # runner-up readings, best first (the chosen text excluded)


@dataclass(frozen=True)
class RecognizerSettings:
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # 0: onnxruntime picks (all cores)
    # One page's fields. On CPU 4 and 16 read at the same CPU per page (`formreader scan`, 60 mixed
    # files, same output), and a long file then holds what a one-page file does: 500-frame TIFF
    # 1.46x a one-page file's peak RSS, 1.63x at 16 (python -m formreader.benchmark.scan_memory).
    # Raise it on a GPU.
    batch_size: int = 4
    decoder: str = "greedy"  # greedy | beam
    beam_width: int = 10
    # Names prior on name fields: "bundled" (INSEE French names), "none"/None, or a names list (CSV
    # with a NAME column and optional COUNT, or one name a line). Any prior switches decoding to
    # beam. None here: a bare model reads as it is; the application default is "bundled" (config.py).
    lexicon: str | Path | None = None
    second_opinion: str = "always"  # off | cascade | always: when PP-OCRv5 also reads (recognize/ensemble.py)
    cascade_below: float = 0.9  # cascade: crops whose CRNN confidence is below this get the second opinion
    # Field experts read next to the CRNN on the field kinds their files name (recognize/ensemble.py):
    # "bundled" (the date expert), "none", or model files separated by commas.
    experts: str = "bundled"


class Model(Protocol):
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class PreProcessor:
    """Gray crops -> model input batch, exactly as in training."""

    def __init__(self, spec: InputSpec):
        self.spec = spec

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.stack([self.normalize(c) for c in crops])

    def normalize(self, crop: np.ndarray) -> np.ndarray:
        return normalize_crop(crop, self.spec)

    def width(self, array: np.ndarray) -> int:
        """Columns of a normalized crop up to its last one that is not blank paper."""
        cols = np.flatnonzero(np.abs(array - self.spec.paper).max(axis=0) > 1e-3)
        return int(cols[-1]) + 1 if cols.size else 1

    def stack(self, arrays: list[np.ndarray]) -> np.ndarray:
        return to_batch(arrays, self.spec)


class OnnxModel:
    """An onnxruntime session returning (N, T, C) class probabilities."""

    def __init__(self, session):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        # One run at a time: concurrent runs would each hold a batch's activations (PP-OCR: tens of
        # MB), and on few cores they only share the same threads. Other threads decode meanwhile.
        self._running = threading.Lock()

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._running:
            return self.session.run(None, {self.input_name: batch})[0]


class CTCPostProcessor:
    """(N, T, C) probabilities -> readings: greedy for the whole batch at once, or a per-crop
    decoder (beam search, names lexicon)."""

    def __init__(self, alphabet: str, decode: Callable[[np.ndarray], tuple[str, float]] | None = None):
        self.alphabet = alphabet
        self.decode = decode

    def __call__(self, probs: np.ndarray) -> list[Reading]:
        if self.decode is None:
            return [Reading(*r) for r in greedy_decode_batch(probs, self.alphabet)]
        return [Reading(*self.decode(p)) for p in probs]


class Predictor:
    """`kinds`: the field kinds this model is an expert for (from its file); empty: any field."""

    def __init__(self, pre_processor: Callable, model: Model, post_processor: Callable, batch_size: int = 64,
                 kinds: tuple[str, ...] = ()):
        self.pre_processor = pre_processor
        self.model = model
        self.post_processor = post_processor
        self.batch_size = max(1, batch_size)
        self.kinds = kinds

    def __call__(self, crops: list[np.ndarray]) -> list[Reading]:
        return self.predict(crops)[0]

    def predict(self, crops: list[np.ndarray], kinds: list[str] | None = None) -> tuple[list[Reading], Timings]:
        """Read crops in batches of similar width (less padding); results keep the input order.

        `kinds` is accepted for interface parity with `FieldReader` (which applies field grammars);
        a bare Predictor reads every crop alike.
        """
        timings = Timings()
        out: list[Reading | None] = [None] * len(crops)
        for idx, probs, seconds in self._batches(crops):
            t1 = time.perf_counter()
            readings = self.post_processor(probs)
            timings.add("recognize", seconds)
            timings.add("decode", time.perf_counter() - t1)
            for i, reading in zip(idx, readings):
                out[i] = reading
        return out, timings  # type: ignore[return-value]

    def probabilities(self, crops: list[np.ndarray], transform: Callable[[np.ndarray], np.ndarray] | None = None
                      ) -> tuple[list[np.ndarray], float]:
        """Per-crop (T, C) class probabilities in input order, and the seconds the model took.

        `transform` is applied to each crop's probabilities as its batch comes out (the ensemble
        folds the second model's ~200 classes onto ~70 here), so only one batch of full-width outputs
        is ever held: memory stays flat in the number of crops.
        """
        out: list[np.ndarray | None] = [None] * len(crops)
        total = 0.0
        for idx, probs, seconds in self._batches(crops):
            total += seconds
            for i, p in zip(idx, probs):
                out[i] = transform(p) if transform is not None else p
        return out, total  # type: ignore[return-value]

    def _batches(self, crops: list[np.ndarray]):
        """(crop indices, (n, T, C) probabilities, seconds) per batch.

        Crops are normalized first, then batched by the width of their ink, so a batch holds
        crops of similar length (less padding, and a width-trimming pre-processor cuts more).
        A plain callable pre-processor gets the crops sorted by aspect instead.
        """
        if not isinstance(self.pre_processor, PreProcessor):
            order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(crops[i].shape[0], 1))
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                t0 = time.perf_counter()
                probs = self.model(self.pre_processor([crops[i] for i in idx]))
                yield idx, probs, time.perf_counter() - t0
            return
        t0 = time.perf_counter()
        arrays = [self.pre_processor.normalize(c) for c in crops]
        widths = [self.pre_processor.width(a) for a in arrays]
        order = sorted(range(len(crops)), key=lambda i: widths[i])
        spent = time.perf_counter() - t0
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            t0 = time.perf_counter()
            probs = self.model(self.pre_processor.stack([arrays[i] for i in idx]))
            yield idx, probs, time.perf_counter() - t0 + spent
            spent = 0.0


def read_spec(session, source: str) -> ModelSpec:
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise ModelError(f"{source}: not a formreader model (no {METADATA_KEY} metadata)")
    spec = ModelSpec.from_json(meta[METADATA_KEY], source)
    _check_io(session, spec, source)
    return spec


def _check_io(session, spec: ModelSpec, source: str) -> None:
    shape = session.get_inputs()[0].shape
    c = spec.input.channels
    expect = [spec.input.height, spec.input.width, c] if spec.input.layout == "NHWC" else [c, spec.input.height, spec.input.width]
    dims = [d if isinstance(d, int) else None for d in shape[1:]]
    if len(dims) != 3 or any(d is not None and d != e for d, e in zip(dims, expect)):
        raise ModelError(f"{source}: input shape {shape} does not match its metadata ({spec.input.layout} {expect})")
    out = session.get_outputs()[0].shape
    if isinstance(out[-1], int) and out[-1] != spec.num_classes:
        raise ModelError(f"{source}: {out[-1]} output classes but alphabet has {spec.num_classes - 1} characters")


def make_session(model_path: Path, device: str = "auto", threads: int = 0):
    import onnxruntime as ort

    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # a missing CUDA library is not an error under device=auto
    # Idle onnxruntime threads would spin on cores the page workers need (a third more CPU per crop).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = _providers(device, ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"{path}: cannot load model ({str(exc).splitlines()[0][:200]})") from exc
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise ModelError(f"{path}: --device cuda requested but CUDA could not be initialized on this machine")
    return session


# cuDNN's default EXHAUSTIVE search times every convolution algorithm for each new input shape, and
# field crops change width (and batches their size) on nearly every run. With it, a scan on an H200
# ran 7.6x slower than on that machine's CPU (MODEL.md). PaddleOCR and PaddleX traced the same
# slowdown of their PP-OCR recognizers to that search and ship HEURISTIC, which picks an algorithm
# per shape without timing them. Not yet measured here on a GPU.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


def _providers(device: str, available: list[str]) -> list[str | tuple[str, dict]]:
    if device not in ("auto", "cpu", "cuda"):
        raise ModelError(f"unknown device {device!r} (choose auto, cpu or cuda)")
    if device == "cpu" or "CUDAExecutionProvider" not in available:
        if device == "cuda":
            raise ModelError("--device cuda requested but this onnxruntime has no CUDA support")
        return ["CPUExecutionProvider"]
    if device == "auto" and not _cuda_libraries_load():
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", CUDA_OPTIONS), "CPUExecutionProvider"]


def _cuda_libraries_load() -> bool:
    """True when the CUDA driver is present; saves onnxruntime from logging a failed provider load."""
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def make_decoder(spec: ModelSpec, settings: RecognizerSettings) -> Callable[[np.ndarray], tuple[str, float]] | None:
    """None means batched greedy decoding (the fast default of a bare model)."""
    from formreader.recognize.decoding import beam_decode, load_lexicon

    lexicon = load_lexicon(settings.lexicon)
    if settings.decoder == "greedy" and lexicon is None:
        return None
    if settings.decoder not in ("greedy", "beam"):
        raise ModelError(f"unknown decoder {settings.decoder!r} (choose greedy or beam)")
    return lambda probs: beam_decode(probs, spec.alphabet, beam_width=settings.beam_width, lexicon=lexicon)


def load_predictor(model_path: Path | None = None, settings: RecognizerSettings = RecognizerSettings()) -> Predictor:
    path = Path(model_path) if model_path else DEFAULT_MODEL
    session = make_session(path, settings.device, settings.threads)
    spec = read_spec(session, str(path))
    return Predictor(
        PreProcessor(spec.input),
        OnnxModel(session),
        CTCPostProcessor(spec.alphabet, make_decoder(spec, settings)),
        settings.batch_size,
        spec.kinds,
    )
