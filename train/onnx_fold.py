"""Fold multiplications and additions by constants into the convolutions next to them.

PP-OCRv5's backbone (PP-LCNetV3) follows most convolutions with a "learnable affine block": a
multiplication and an addition by a scalar, before and after the hard-swish. onnxruntime fuses
a convolution's bias but not these scalars, so each costs a pass over the feature map, and the
layout changes around them cost more (on 2 CPU threads: 18 -> 8.4 ms per crop, both steps below).

Folding is exact algebra, done in float64 and stored as float32:
- forward, `Conv -> Mul(s) / Add(b)`: W' = s * W, bias' = s * bias + b (a scalar, or one value per
  output channel);
- backward, `Mul(s) / Add(b) -> Conv` with no padding: W' = s * W, bias' = bias + b * sum(W) (a
  scalar only).
A padded convolution pads with zeros, which the folded form would not see, so the `Mul(s) ->
Add(b)` before it stays, as one BatchNormalization (scale s, bias b, mean 0, variance 1, epsilon
0: the same numbers). onnxruntime runs that in its blocked layout, where a Mul and an Add forced
two layout changes (on 2 CPU threads: 11.0 -> 8.9 ms per crop, on top of the folding).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def fold_affine_into_convs(model) -> int:
    """Fold in place; returns how many Mul/Add nodes were removed (folded, or replaced by a
    BatchNormalization)."""
    folded = 0
    while _fold_one(model.graph):
        folded += 1
    while _affine_to_batch_norm(model.graph):
        folded += 2
    _drop_dead_nodes(model.graph)
    del model.graph.value_info[:]  # intermediate names changed
    return folded


def _fold_one(graph) -> bool:
    from onnx import helper, numpy_helper

    producers = {out: node for node in graph.node for out in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    outputs = {o.name for o in graph.output}
    initializers = {t.name: t for t in graph.initializer}

    def const(name: str) -> np.ndarray | None:
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
        if node is not None and node.op_type == "Reshape":  # a bias reshaped to (1, C, 1, 1)
            data, shape = const(node.input[0]), const(node.input[1])
            return None if data is None or shape is None else data.reshape(shape)
        return None

    def affine(node, x: str) -> tuple[str, np.ndarray] | None:
        """(op, constant) of a Mul/Add whose other operand is a constant."""
        if node.op_type not in ("Mul", "Add") or len(node.input) != 2 or x not in node.input:
            return None
        value = const(node.input[1] if node.input[0] == x else node.input[0])
        return None if value is None else (node.op_type, value.astype(np.float64))

    def store(conv, weight: np.ndarray, bias: np.ndarray) -> None:
        for pos, array, tag in ((1, weight, "weight"), (2, bias, "bias")):
            name = f"{conv.output[0]}_{tag}_folded_{len(graph.initializer)}"
            graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), name))
            if len(conv.input) <= pos:
                conv.input.append(name)
            else:
                conv.input[pos] = name

    for conv in graph.node:
        if conv.op_type != "Conv" or const(conv.input[1]) is None:
            continue
        weight = const(conv.input[1]).astype(np.float64)
        channels = weight.shape[0]
        bias = (const(conv.input[2]).astype(np.float64).reshape(-1) if len(conv.input) > 2 and conv.input[2]
                else np.zeros(channels))
        users = consumers[conv.output[0]]
        if len(users) == 1 and conv.output[0] not in outputs and (op := affine(users[0], conv.output[0])):
            kind, value = op
            if value.size == 1 or value.shape in ((channels, 1, 1), (1, channels, 1, 1)):
                value = value.reshape(-1)
                if kind == "Mul":
                    weight, bias = weight * value.reshape(-1, 1, 1, 1), bias * value
                else:
                    bias = bias + value
                store(conv, weight, bias)
                conv.output[0] = users[0].output[0]
                graph.node.remove(users[0])
                return True
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        before = producers.get(conv.input[0])
        if (before is not None and not any(attrs.get("pads", [])) and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
                and len(consumers[conv.input[0]]) == 1 and conv.input[0] not in outputs):
            x = next((name for name in before.input if const(name) is None), None)
            op = affine(before, x) if x is not None else None
            if op is not None and op[1].size == 1:
                kind, value = op[0], float(op[1].reshape(()))
                if kind == "Mul":
                    weight = weight * value
                else:
                    bias = bias + value * weight.sum(axis=(1, 2, 3))
                store(conv, weight, bias)
                conv.input[0] = x
                graph.node.remove(before)
                return True
    return False


def _affine_to_batch_norm(graph) -> bool:
    """One `x -> Mul(scalar) -> Add(scalar) -> Conv` left by `_fold_one` becomes
    `x -> BatchNormalization -> Conv`; False when none is left."""
    from onnx import helper, numpy_helper

    producers = {out: node for node in graph.node for out in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    outputs = {o.name for o in graph.output}
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    def const(name: str) -> np.ndarray | None:
        if name in initializers:
            return initializers[name]
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
        return None

    def scalar_op(node, kind: str) -> tuple[str, float] | None:
        """(the other input, the scalar) of a `kind` node with one constant operand of size 1."""
        if node is None or node.op_type != kind or len(node.input) != 2:
            return None
        for x, c in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            value = const(c)
            if value is not None and value.size == 1 and const(x) is None:
                return x, float(value.reshape(()))
        return None

    def single_use(name: str) -> bool:
        return len(consumers[name]) == 1 and name not in outputs

    for conv in graph.node:
        weight = const(conv.input[1]) if conv.op_type == "Conv" else None
        add = producers.get(conv.input[0]) if weight is not None else None
        if add is None or not single_use(add.output[0]) or (shift := scalar_op(add, "Add")) is None:
            continue
        mul = producers.get(shift[0])
        if not single_use(shift[0]) or (scale := scalar_op(mul, "Mul")) is None:
            continue
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        channels = weight.shape[1] * group
        name = f"{add.output[0]}_affine_{len(graph.initializer)}"
        params = {"scale": scale[1], "bias": shift[1], "mean": 0.0, "var": 1.0}
        for key, value in params.items():
            graph.initializer.append(numpy_helper.from_array(np.full(channels, value, np.float32), f"{name}_{key}"))
        at = list(graph.node).index(mul)
        graph.node.remove(mul)
        graph.node.remove(add)
        graph.node.insert(at, helper.make_node("BatchNormalization", [scale[0]] + [f"{name}_{k}" for k in params],
                                               [add.output[0]], epsilon=0.0, name=name))
        return True
    return False


def _drop_dead_nodes(graph) -> None:
    """Nodes none of whose outputs is used (the folded constants), and unused initializers."""
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
