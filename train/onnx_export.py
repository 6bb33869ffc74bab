"""Write the trained CRNN as a plain ONNX graph (Conv/MaxPool/LSTM/Softmax) with formreader metadata.

Converting through TensorFlow would turn each Keras LSTM into a generic Loop, which onnxruntime
runs several times slower than its native LSTM kernel; the architecture is a fixed, config-driven
sequence, so the graph is written directly from the weights and checked against Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from formreader.preprocess import InputSpec
from formreader.recognize.spec import METADATA_KEY, ModelSpec
from train.config import ModelConfig

OPSET = 17


class GraphWriter:
    """Accumulates nodes and initializers; names outputs uniquely."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        self.count += 1
        out = f"{kind.lower()}_{self.count}"
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out


def _conv_bn(g: GraphWriter, x: str, weights: dict, i: int) -> str:
    """Conv (no bias) + inference BatchNorm folded into one Conv with bias."""
    kernel = weights[f"conv{i}"][0]  # (kh, kw, in, out)
    gamma, beta, mean, var = weights[f"bn{i}"]
    scale = gamma / np.sqrt(var + 1e-3)  # keras BatchNormalization default epsilon
    w = (kernel * scale).transpose(3, 2, 0, 1).astype(np.float32)
    b = (beta - mean * scale).astype(np.float32)
    return g.op("Conv", [x, g.const(f"conv{i}_w", w), g.const(f"conv{i}_b", b)], pads=[1, 1, 1, 1])


def _lstm_weights(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray):
    """Keras gate order i,f,c,o -> ONNX i,o,f,c; returns W (4u,in), R (4u,u), B (8u)."""
    def reorder(m: np.ndarray) -> np.ndarray:
        i, f, c, o = np.split(m, 4, axis=-1)
        return np.concatenate([i, o, f, c], axis=-1)
    return reorder(kernel).T, reorder(recurrent).T, np.concatenate([reorder(bias), np.zeros_like(bias)])


def _bilstm(g: GraphWriter, x: str, layer_weights: list, units: int, i: int) -> str:
    """Time-major (T, N, F) -> (T, N, 2*units), forward then backward like keras Bidirectional."""
    fw = _lstm_weights(*layer_weights[:3])
    bw = _lstm_weights(*layer_weights[3:])
    w = g.const(f"lstm{i}_W", np.stack([fw[0], bw[0]]).astype(np.float32))
    r = g.const(f"lstm{i}_R", np.stack([fw[1], bw[1]]).astype(np.float32))
    b = g.const(f"lstm{i}_B", np.stack([fw[2], bw[2]]).astype(np.float32))
    y = g.op("LSTM", [x, w, r, b], hidden_size=units, direction="bidirectional")  # (T, 2, N, u)
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3])
    return g.op("Reshape", [y, g.const(f"lstm{i}_shape", np.array([0, 0, 2 * units], np.int64))])


def _dense(g: GraphWriter, x: str, kernel: np.ndarray, bias: np.ndarray, name: str) -> str:
    y = g.op("MatMul", [x, g.const(f"{name}_w", kernel.astype(np.float32))])
    return g.op("Add", [y, g.const(f"{name}_b", bias.astype(np.float32))])


def build_graph(cfg: ModelConfig, weights: dict):
    """onnx.ModelProto: NHWC image (N,H,W,1) -> softmax probabilities (N,T,classes)."""
    from onnx import TensorProto, helper

    g = GraphWriter()
    x = g.op("Transpose", ["image"], perm=[0, 3, 1, 2])
    for i, (_, pool_h, pool_w) in enumerate(cfg.conv_blocks):
        x = g.op("Relu", [_conv_bn(g, x, weights, i)])
        if pool_h * pool_w > 1:
            x = g.op("MaxPool", [x], kernel_shape=[pool_h, pool_w], strides=[pool_h, pool_w])
    x = g.op("Transpose", [x], perm=[3, 0, 2, 1])  # (N,C,H,W) -> (W=T, N, H, C), like keras Permute
    x = g.op("Reshape", [x, g.const("columns_shape", np.array([0, 0, -1], np.int64))])
    x = g.op("Relu", [_dense(g, x, *weights["proj"], "proj")])
    for i, units in enumerate(cfg.lstm_units):
        x = _bilstm(g, x, weights[f"bilstm{i}"], units, i)
    x = _dense(g, x, *weights["logits"], "logits")
    x = g.op("Transpose", [x], perm=[1, 0, 2])
    probs = g.op("Softmax", [x], axis=-1)
    g.nodes[-1].output[0] = "probs"
    t = None  # time steps stay symbolic in the declared output
    graph = helper.make_graph(
        g.nodes, "crnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", cfg.height, cfg.width, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", t or "T", len(cfg.alphabet) + 1])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="formreader-train")
    model.ir_version = 8
    return model


def keras_weights(model) -> dict:
    """Layer name -> list of numpy weights."""
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.get_weights()}


def model_spec(cfg: ModelConfig) -> ModelSpec:
    return ModelSpec(alphabet=cfg.alphabet, input=InputSpec(height=cfg.height, width=cfg.width), kinds=tuple(cfg.kinds))


def write_onnx(cfg: ModelConfig, weights: dict, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = build_graph(cfg, weights)
    helper.set_model_props(model, {METADATA_KEY: model_spec(cfg).to_json()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def max_difference(keras_model, onnx_path: Path, x: np.ndarray) -> float:
    """Largest |onnxruntime - keras| probability over a batch (the export check)."""
    import onnxruntime as ort

    from train.fit import softmax

    ref = softmax(np.asarray(keras_model.predict(x, verbose=0)))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(ref - got).max())


def export_run(run: Path, output: Path, weights_name: str, root: Path, tolerance: float = 1e-4) -> Path:
    """Load run/config.json + weights, write ONNX, verify against Keras on real val crops."""
    from train.config import load_config
    from train.fit import load_val
    from train.model import build_crnn

    cfg = load_config(run / "config.json")
    keras_model = build_crnn(cfg.model)
    keras_model.load_weights(run / weights_name)
    write_onnx(cfg.model, keras_weights(keras_model), output)
    try:
        x, _ = load_val(cfg, root)
        x = x[:32]
    except FileNotFoundError:  # no shared data: check on noise instead of real crops
        x = np.random.default_rng(0).random((8, cfg.model.height, cfg.model.width, 1), np.float32)
    diff = max_difference(keras_model, output, x)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB); max |onnx - keras| = {diff:.2e}")
    if diff > tolerance:
        raise SystemExit(f"export check failed: onnxruntime differs from keras by {diff:.2e} > {tolerance}")
    return output
