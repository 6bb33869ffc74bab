"""The recognizer is built from its model file; a mismatched model fails loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from formreader.errors import ModelError
from formreader.preprocess import InputSpec
from formreader.recognize.predictor import (
    CTCPostProcessor,
    Predictor,
    PreProcessor,
    RecognizerSettings,
    load_predictor,
)
from formreader.recognize.spec import ModelSpec
from tests.tinymodel import build_tiny_model


def crop(width: int) -> np.ndarray:
    img = np.full((40, width), 255, np.uint8)
    img[10:30, 5 : width - 5 : 7] = 0
    return img


def test_load_from_metadata_and_read_in_order(tiny_model: Path):
    predictor = load_predictor(tiny_model, RecognizerSettings(device="cpu", batch_size=3))
    crops = [crop(w) for w in (300, 60, 200, 90, 150, 40, 250)]
    readings = predictor(crops)
    assert len(readings) == len(crops)
    assert all(0.0 <= r.confidence <= 1.0 for r in readings)
    # Batching by width must not shuffle results: each crop read alone gives the same answer.
    assert readings == [predictor([c])[0] for c in crops]


def test_parts_can_be_swapped_for_fakes():
    spec = ModelSpec()
    seen = []

    def fake_model(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        probs = np.zeros((len(batch), 8, spec.num_classes), np.float32)
        probs[:, :, 0] = 1.0
        probs[:, 1, 1 + spec.alphabet.index("O")] = 2.0  # 'O', blank, 'K'
        probs[:, 3, 1 + spec.alphabet.index("K")] = 2.0
        return probs / probs.sum(-1, keepdims=True)

    predictor = Predictor(PreProcessor(spec.input), fake_model, CTCPostProcessor(spec.alphabet), batch_size=2)
    readings = predictor([crop(100)] * 5)
    assert [r.text for r in readings] == ["OK"] * 5
    assert seen == [(2, 64, 256, 1), (2, 64, 256, 1), (1, 64, 256, 1)]


def test_nchw_layout_is_honoured(tmp_path: Path):
    spec = ModelSpec(input=InputSpec(layout="NCHW"))
    batch = PreProcessor(spec.input)([crop(100)])
    assert batch.shape == (1, 1, 64, 256)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ("", "unreadable"),
        ('{"format_version": 99, "alphabet": "AB", "input": {}}', "format version 99"),
        ('{"format_version": 1, "alphabet": "AAB", "input": {}}', "repeated"),
        ('{"format_version": 1, "alphabet": "AB", "input": {"layout": "HWNC"}}', "layout"),
    ],
)
def test_bad_metadata_is_refused(tmp_path: Path, metadata: str, message: str):
    path = build_tiny_model(tmp_path / "bad.onnx", metadata=metadata)
    with pytest.raises(ModelError, match=message):
        load_predictor(path)


def test_alphabet_that_does_not_match_the_output_is_refused(tmp_path: Path):
    path = build_tiny_model(tmp_path / "m.onnx", spec=ModelSpec(alphabet="ABC"), metadata=ModelSpec().to_json())
    with pytest.raises(ModelError, match="output classes"):
        load_predictor(path)


def test_input_size_that_does_not_match_is_refused(tmp_path: Path):
    path = build_tiny_model(tmp_path / "m.onnx", spec=ModelSpec(input=InputSpec(height=32, width=128)),
                            metadata=ModelSpec().to_json())
    with pytest.raises(ModelError, match="input shape"):
        load_predictor(path)


def test_missing_or_garbage_model_file(tmp_path: Path):
    with pytest.raises(ModelError, match="not found"):
        load_predictor(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        load_predictor(tmp_path / "junk.onnx")


def test_cuda_request_without_a_gpu_is_a_clear_error(tiny_model: Path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            load_predictor(tiny_model, RecognizerSettings(device="cuda"))
            pytest.skip("a working GPU is present")
        except ModelError as exc:
            assert "cuda" in str(exc).lower()
    else:
        with pytest.raises(ModelError, match="CUDA"):
            load_predictor(tiny_model, RecognizerSettings(device="cuda"))


def test_auto_device_falls_back_to_cpu_quietly(tiny_model: Path, capfd):
    predictor = load_predictor(tiny_model, RecognizerSettings(device="auto"))
    predictor([crop(100)])
    assert "CPUExecutionProvider" in predictor.model.providers
    assert "error" not in capfd.readouterr().err.lower()


def test_cuda_sessions_pick_convolution_algorithms_without_timing_each_shape():
    # Crops change width on nearly every run: an exhaustive cuDNN search per shape made CUDA slower
    # than the CPU (MODEL.md).
    from formreader.recognize.predictor import _providers

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert _providers("cuda", both) == [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
    assert _providers("cpu", both) == ["CPUExecutionProvider"]
