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
Add(b)` before it stays, as one BatchNormalization (scale s, bias b, mean 0, variance 1 - eps,
epsilon eps = 1e-5, the least cuDNN accepts: the same numbers on the CPU and on CUDA).
onnxruntime runs that in its blocked layout, where a Mul and an Add forced two layout changes
(on 2 CPU threads: 11.0 -> 8.9 ms per crop, on top of the folding).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

BN_EPSILON = 1e-5  # cuDNN raises a smaller epsilon to this; the variance makes up for it


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


class _Index:
    """Who makes and who reads each tensor of a graph, and its constants; built anew after each
    change (a few hundred nodes)."""

    def __init__(self, graph):
        self.graph = graph
        self.producers = {out: node for node in graph.node for out in node.output}
        self.consumers = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in graph.output}
        self.initializers = {t.name: t for t in graph.initializer}

    def const(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
        if node is not None and node.op_type == "Reshape":  # a bias reshaped to (1, C, 1, 1)
            data, shape = self.const(node.input[0]), self.const(node.input[1])
            return None if data is None or shape is None else data.reshape(shape)
        return None

    def single_use(self, name: str) -> bool:
        return len(self.consumers[name]) == 1 and name not in self.outputs

    def affine(self, node) -> tuple[str, str, np.ndarray] | None:
        """(op, the other input, the constant) of a Mul/Add with one constant operand."""
        if node is None or node.op_type not in ("Mul", "Add") or len(node.input) != 2:
            return None
        for x, c in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            value = self.const(c)
            if value is not None and self.const(x) is None:
                return node.op_type, x, value.astype(np.float64)
        return None


def _fold_one(graph) -> bool:
    """Fold one Mul/Add into a Conv; False when none is left."""
    index = _Index(graph)
    convs = [n for n in graph.node if n.op_type == "Conv" and index.const(n.input[1]) is not None]
    return any(_fold_forward(index, conv) or _fold_backward(index, conv) for conv in convs)


def _weights(index: _Index, conv) -> tuple[np.ndarray, np.ndarray]:
    weight = index.const(conv.input[1]).astype(np.float64)
    has_bias = len(conv.input) > 2 and conv.input[2]
    return weight, index.const(conv.input[2]).astype(np.float64).reshape(-1) if has_bias else np.zeros(weight.shape[0])


def _store(graph, conv, weight: np.ndarray, bias: np.ndarray) -> None:
    from onnx import numpy_helper

    for pos, array, tag in ((1, weight, "weight"), (2, bias, "bias")):
        name = f"{conv.output[0]}_{tag}_folded_{len(graph.initializer)}"
        graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), name))
        if len(conv.input) <= pos:
            conv.input.append(name)
        else:
            conv.input[pos] = name


def _fold_forward(index: _Index, conv) -> bool:
    """`Conv -> Mul/Add` by a scalar or a per-channel constant."""
    users = index.consumers[conv.output[0]]
    op = index.affine(users[0]) if index.single_use(conv.output[0]) else None
    if op is None:
        return False
    kind, _, value = op
    weight, bias = _weights(index, conv)
    channels = weight.shape[0]
    if not (value.size == 1 or value.shape in ((channels, 1, 1), (1, channels, 1, 1))):
        return False
    value = value.reshape(-1)
    if kind == "Mul":
        weight, bias = weight * value.reshape(-1, 1, 1, 1), bias * value
    else:
        bias = bias + value
    _store(index.graph, conv, weight, bias)
    conv.output[0] = users[0].output[0]
    index.graph.node.remove(users[0])
    return True


def _fold_backward(index: _Index, conv) -> bool:
    """`Mul/Add -> Conv` by a scalar, when the convolution does not pad."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    if any(attrs.get("pads", [])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        return False
    before = index.producers.get(conv.input[0])
    op = index.affine(before) if index.single_use(conv.input[0]) else None
    if op is None or op[2].size != 1:
        return False
    kind, x, value = op[0], op[1], float(op[2].reshape(()))
    weight, bias = _weights(index, conv)
    if kind == "Mul":
        weight = weight * value
    else:
        bias = bias + value * weight.sum(axis=(1, 2, 3))
    _store(index.graph, conv, weight, bias)
    conv.input[0] = x
    index.graph.node.remove(before)
    return True


def _affine_to_batch_norm(graph) -> bool:
    """One `x -> Mul(scalar) -> Add(scalar) -> Conv` left by `_fold_one` becomes
    `x -> BatchNormalization -> Conv`; False when none is left."""
    from onnx import helper, numpy_helper

    index = _Index(graph)
    for conv in graph.node:
        weight = index.const(conv.input[1]) if conv.op_type == "Conv" else None
        add = index.producers.get(conv.input[0]) if weight is not None else None
        shift = index.affine(add) if add is not None and index.single_use(conv.input[0]) else None
        if shift is None or shift[0] != "Add" or shift[2].size != 1:
            continue
        mul = index.producers.get(shift[1])
        scale = index.affine(mul) if index.single_use(shift[1]) else None
        if scale is None or scale[0] != "Mul" or scale[2].size != 1:
            continue
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        channels = weight.shape[1] * group
        name = f"{add.output[0]}_affine_{len(graph.initializer)}"
        params = {"scale": float(scale[2].reshape(())), "bias": float(shift[2].reshape(())), "mean": 0.0,
                  "var": 1.0 - BN_EPSILON}
        for key, value in params.items():
            graph.initializer.append(numpy_helper.from_array(np.full(channels, value, np.float32), f"{name}_{key}"))
        at = list(graph.node).index(mul)
        graph.node.remove(mul)
        graph.node.remove(add)
        graph.node.insert(at, helper.make_node("BatchNormalization", [scale[1]] + [f"{name}_{k}" for k in params],
                                               [add.output[0]], epsilon=BN_EPSILON, name=name))
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
