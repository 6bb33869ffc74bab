"""A tiny, valid formreader ONNX model built without TensorFlow, for fast tests.

Its weights are random: it exercises loading, metadata checks, batching and decoding, not
accuracy (tests of accuracy use the shipped model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from formreader.preprocess import InputSpec
from formreader.recognize.spec import METADATA_KEY, ModelSpec


def build_tiny_model(path: Path, spec: ModelSpec | None = None, seed: int = 0, metadata: str | None = None) -> Path:
    """(N, H, W, 1) -> column features -> linear -> softmax over the alphabet, T = W / 4 steps."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = spec or ModelSpec(input=InputSpec(height=64, width=256))
    h, w, c = spec.input.height, spec.input.width, spec.num_classes
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.5, size=(4 * h, c)).astype(np.float32)
    weight[:, 0] += 2.0  # mostly blank, like a real CTC model
    nodes = [
        helper.make_node("Reshape", ["image", "shape_nhw"], ["nhw"]),
        helper.make_node("Transpose", ["nhw"], ["nwh"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["nwh", "shape_steps"], ["steps"]),
        helper.make_node("MatMul", ["steps", "weight"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, h, w], np.int64), "shape_nhw"),
        numpy_helper.from_array(np.array([-1, w // 4, 4 * h], np.int64), "shape_steps"),
        numpy_helper.from_array(weight, "weight"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", w // 4, c])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: metadata if metadata is not None else spec.to_json()})
    onnx.save(model, str(path))
    return Path(path)
