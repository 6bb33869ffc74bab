"""Rebuild a trainable Keras CRNN from an ONNX file written by `train.onnx_export` (its exact inverse).

The exported graph has batch norm folded into each conv (kernel * s, bias beta - mean * s), so
the original (gamma, beta, mean, var) cannot be recovered. Any split with the same product gives
the same inference function; we pick the one that also trains sensibly: keep the folded kernel,
set the moving mean/variance to the per-channel statistics of that conv's output on real crops
(what training-mode batch norm will see), and gamma = sqrt(var + eps), beta = bias + mean, so
inference computes exactly conv(x) + bias again. LSTM gates go back from ONNX i,o,f,c to Keras
i,f,c,o; dense layers are stored as Keras kernels already.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from formreader.recognize.spec import METADATA_KEY, ModelSpec
from train.config import ModelConfig

BN_EPSILON = 1e-3  # keras BatchNormalization default, as assumed by onnx_export._conv_bn


def read_onnx(path: Path) -> tuple[dict[str, np.ndarray], list, ModelSpec]:
    """(initializers by name, graph nodes, formreader spec) of an exported model."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: not a formreader model (no {METADATA_KEY} metadata)")
    return weights, list(model.graph.node), ModelSpec.from_json(meta[METADATA_KEY], str(path))


def config_from_onnx(path: Path, dropout: float = 0.2) -> ModelConfig:
    """The ModelConfig that `train.model.build_crnn` needs to hold this file's weights."""
    from onnx import helper

    weights, nodes, spec = read_onnx(path)
    convs = sorted(int(k[4:-2]) for k in weights if k.startswith("conv") and k.endswith("_w"))
    if not convs or "proj_w" not in weights or "logits_w" not in weights:
        raise ValueError(f"{path}: not a CRNN written by train.onnx_export (conv/proj/logits weights missing)")
    # Each Conv is followed by Relu and optionally a MaxPool: read the pools in graph order.
    pools: list[list[int]] = []
    for node in nodes:
        if node.op_type == "Conv":
            pools.append([1, 1])
        elif node.op_type == "MaxPool" and pools:
            kernel = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "kernel_shape")
            pools[-1] = [int(k) for k in kernel]
    blocks = [[int(weights[f"conv{i}_w"].shape[0]), *pools[i]] for i in convs]
    lstms = sorted(int(k[4:-2]) for k in weights if k.startswith("lstm") and k.endswith("_R"))
    return ModelConfig(
        height=spec.input.height, width=spec.input.width, alphabet=spec.alphabet, conv_blocks=blocks,
        proj_units=int(weights["proj_w"].shape[1]), lstm_units=[int(weights[f"lstm{i}_R"].shape[2]) for i in lstms],
        dropout=dropout, kinds=list(spec.kinds),
    )


def _keras_lstm(w: np.ndarray, r: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """One direction: ONNX W (4u,in), R (4u,u), B (8u) in i,o,f,c -> keras kernel, recurrent, bias."""
    def reorder(m: np.ndarray) -> np.ndarray:
        i, o, f, c = np.split(m, 4, axis=-1)
        return np.concatenate([i, f, c, o], axis=-1)
    units = r.shape[1]
    bias = b[: 4 * units] + b[4 * units:]  # Wb + Rb; the exporter writes Rb = 0
    return [reorder(w.T), reorder(r.T), reorder(bias)]


def keras_weights_from_onnx(cfg: ModelConfig, weights: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Layer name -> keras weights, batch norm as identity (mean 0, var 1 - eps, gamma 1, beta = bias)."""
    out: dict[str, list[np.ndarray]] = {}
    for i, _ in enumerate(cfg.conv_blocks):
        kernel = weights[f"conv{i}_w"].transpose(2, 3, 1, 0)  # (out,in,kh,kw) -> (kh,kw,in,out)
        bias = weights[f"conv{i}_b"]
        out[f"conv{i}"] = [kernel]
        ones = np.ones_like(bias)
        out[f"bn{i}"] = [ones, bias.copy(), np.zeros_like(bias), ones - BN_EPSILON]
    out["proj"] = [weights["proj_w"], weights["proj_b"]]
    for i, _ in enumerate(cfg.lstm_units):
        w, r, b = weights[f"lstm{i}_W"], weights[f"lstm{i}_R"], weights[f"lstm{i}_B"]
        out[f"bilstm{i}"] = _keras_lstm(w[0], r[0], b[0]) + _keras_lstm(w[1], r[1], b[1])
    out["logits"] = [weights["logits_w"], weights["logits_b"]]
    return {k: [np.asarray(a, np.float32) for a in v] for k, v in out.items()}


def _calibrate_batch_norm(model, cfg: ModelConfig, x: np.ndarray) -> None:
    """Re-split each identity BN so its moving statistics match the conv outputs on `x`.

    Inference stays conv + bias (gamma / sqrt(var + eps) = 1, beta - mean = bias); only the
    training-mode behaviour (batch statistics) becomes what the layer will actually see.
    """
    import keras

    convs = [model.get_layer(f"conv{i}").output for i in range(len(cfg.conv_blocks))]
    outputs = keras.Model(model.input, convs).predict(x, batch_size=64, verbose=0)
    for i, y in enumerate(outputs if isinstance(outputs, list) else [outputs]):
        y = np.asarray(y, np.float64).reshape(-1, y.shape[-1])
        mean, var = y.mean(axis=0), y.var(axis=0)
        layer = model.get_layer(f"bn{i}")
        _, bias, _, _ = layer.get_weights()
        gamma = np.sqrt(var + BN_EPSILON)
        layer.set_weights([a.astype(np.float32) for a in (gamma, bias + mean, mean, var)])


def keras_from_onnx(path: Path, cfg: ModelConfig | None = None, calibration: np.ndarray | None = None):
    """A Keras CRNN computing what the ONNX file computes (logits; the ONNX adds the softmax)."""
    from train.model import build_crnn

    inferred = config_from_onnx(path, cfg.dropout if cfg else 0.2)
    if cfg is not None and (cfg.conv_blocks, cfg.proj_units, cfg.lstm_units) != (
            inferred.conv_blocks, inferred.proj_units, inferred.lstm_units):
        print(f"note: {path} holds {inferred.conv_blocks} / {inferred.proj_units} / {inferred.lstm_units}; "
              "using that architecture instead of the config's")
    cfg = replace(cfg, **{k: getattr(inferred, k) for k in ("height", "width", "alphabet", "conv_blocks",
                                                            "proj_units", "lstm_units")}) if cfg else inferred
    model = build_crnn(cfg)
    weights, _, _ = read_onnx(path)
    for name, values in keras_weights_from_onnx(cfg, weights).items():
        model.get_layer(name).set_weights(values)
    if calibration is not None and len(calibration):
        _calibrate_batch_norm(model, cfg, calibration)
    return model, cfg


def calibration_crops(root: Path, cfg: ModelConfig, limit: int = 256) -> np.ndarray | None:
    """Normalized dev `train` crops (never val) for the BN statistics; None without shared data."""
    from formreader.preprocess import InputSpec, normalize_crop
    from train import sources

    try:
        crops = sources.kaggle_split(root, "train", cfg.alphabet, limit=limit)
    except FileNotFoundError:
        return None
    spec = InputSpec(height=cfg.height, width=cfg.width)
    return np.stack([normalize_crop(im, spec) for im in crops.images])[..., None].astype(np.float32)


def restore_run(onnx_path: Path, config_path: Path, out: Path, root: Path, tolerance: float = 1e-4) -> Path:
    """Write out/config.json + out/init.weights.h5 from an ONNX model; check Keras == ONNX on real crops.

    `python -m train fit --set fit.init_weights=out/init.weights.h5` then continues training it.
    """
    from train.config import load_config
    from train.fit import load_val
    from train.onnx_export import max_difference

    run_cfg = load_config(config_path)
    inferred = config_from_onnx(onnx_path, run_cfg.model.dropout)
    model, model_cfg = keras_from_onnx(onnx_path, run_cfg.model, calibration_crops(root, inferred))
    run_cfg.model = model_cfg
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(run_cfg.to_json(), encoding="utf-8")
    weights = out / "init.weights.h5"
    model.save_weights(weights)
    try:
        x, _ = load_val(run_cfg, root)
    except FileNotFoundError:  # no shared data: compare on noise instead of real crops
        x = np.random.default_rng(0).random((32, model_cfg.height, model_cfg.width, 1), np.float32)
    diff = max_difference(model, onnx_path, x)
    print(f"wrote {weights}; max |keras - onnx| probability over {len(x)} crops = {diff:.2e}")
    if diff > tolerance:
        raise SystemExit(f"restore check failed: keras differs from {onnx_path} by {diff:.2e} > {tolerance}")
    return weights
