"""Folding constant Mul/Add into convolutions (train/onnx_fold.py): same outputs, fewer nodes."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from train.onnx_fold import fold_affine_into_convs


def _const(name: str, value) -> object:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.float32), name + "_v"))


def _block_model(rng) -> object:
    """PP-LCNetV3's pattern: conv, affine, hard-swish, affine, then a 1x1 conv (foldable both ways)
    and a padded depthwise conv (its input affine cannot fold: it pads with zeros)."""
    c = 4
    inits = {
        "w1": rng.normal(size=(c, 3, 3, 3)), "b1": rng.normal(size=(1, c, 1, 1)),
        "w2": rng.normal(size=(c, c, 1, 1)), "w3": rng.normal(size=(c, 1, 3, 3)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        _const("s1", [1.7]),
        helper.make_node("Add", ["c1", "b1"], ["a0"]),  # the exporter's separate conv bias
        helper.make_node("Mul", ["s1", "a0"], ["m1"]),
        _const("t1", [-0.3]),
        helper.make_node("Add", ["m1", "t1"], ["a1"]),
        helper.make_node("HardSwish", ["a1"], ["h1"]),
        _const("s2", [0.8]),
        helper.make_node("Mul", ["h1", "s2"], ["m2"]),
        _const("t2", [0.25]),
        helper.make_node("Add", ["m2", "t2"], ["a2"]),
        helper.make_node("Conv", ["a2", "w2"], ["c2"]),  # 1x1, no padding: takes the affine above
        helper.make_node("HardSwish", ["c2"], ["h2"]),
        _const("s3", [1.3]),
        helper.make_node("Mul", ["h2", "s3"], ["m3"]),
        _const("t3", [0.5]),
        helper.make_node("Add", ["m3", "t3"], ["a3"]),
        helper.make_node("Conv", ["a3", "w3"], ["y"], group=c, pads=[1, 1, 1, 1]),  # padded: keeps it
    ]
    graph = helper.make_graph(
        nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, 8, 20])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_scalar_affine_ops_fold_into_convolutions_exactly():
    rng = np.random.default_rng(0)
    model = _block_model(rng)
    x = rng.normal(size=(2, 3, 8, 20)).astype(np.float32)
    expected = _run(model, x)
    removed = fold_affine_into_convs(model)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node if n.op_type != "Constant"]
    # bias, scale and shift after conv 1; scale and shift before the 1x1 conv; the scale and shift
    # before the padded conv become one BatchNormalization
    assert removed == 7
    assert ops == ["Conv", "HardSwish", "Conv", "HardSwish", "BatchNormalization", "Conv"]
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-4)
    assert fold_affine_into_convs(model) == 0  # nothing left to fold
