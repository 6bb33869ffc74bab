"""CRNN builder: conv blocks -> column features -> BiLSTM stack -> per-column class logits.

Only layer types that `train.onnx_export` knows how to write are used here, so the exported
graph is a plain ONNX Conv/LSTM graph (fast in onnxruntime) rather than a converted TF loop.
"""

from __future__ import annotations

import keras
from keras import layers

from train.config import ModelConfig


def num_classes(cfg: ModelConfig) -> int:
    return len(cfg.alphabet) + 1  # class 0 is the CTC blank


def build_crnn(cfg: ModelConfig) -> keras.Model:
    """Training model: (N, H, W, 1) ink-positive image -> (N, T, classes) logits."""
    inputs = keras.Input((cfg.height, cfg.width, 1), name="image")
    x = inputs
    for i, (filters, pool_h, pool_w) in enumerate(cfg.conv_blocks):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        if pool_h * pool_w > 1:
            x = layers.MaxPooling2D((pool_h, pool_w), name=f"pool{i}")(x)
    _, h, w, c = x.shape
    x = layers.Permute((2, 1, 3), name="columns")(x)  # width becomes time
    x = layers.Reshape((w, h * c), name="flatten_columns")(x)
    x = layers.Dense(cfg.proj_units, activation="relu", name="proj")(x)
    x = layers.Dropout(cfg.dropout, name="drop_proj")(x)
    for i, units in enumerate(cfg.lstm_units):
        x = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name=f"bilstm{i}")(x)
        x = layers.Dropout(cfg.dropout, name=f"drop_lstm{i}")(x)
    logits = layers.Dense(num_classes(cfg), name="logits")(x)
    return keras.Model(inputs, logits, name="crnn")


def time_steps(cfg: ModelConfig) -> int:
    steps = cfg.width
    for _, _, pool_w in cfg.conv_blocks:
        steps //= pool_w
    return steps
