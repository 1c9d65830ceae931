#!/usr/bin/env python3
"""Makes models/test_slow_segmenter.onnx: an untrained, deliberately heavy one-channel
segmenter (about 24.5 G multiply-accumulates: 100-300 ms on a 2-core x86 CPU) for tests and
benchmarks of asynchronous inference, where the model must be slower than the camera.

Input `image` float32 1x3x384x384 (NCHW, [0,1]); output `mask` float32 1x1x384x384
(sigmoid). Random weights with a fixed seed: the output means nothing.

    .venv/bin/python models/make_test_slow.py
"""
import argparse
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(size=384, width=48, depth=8, seed=7):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(name, x, cin, cout, k):
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        b = np.zeros(cout, np.float32)
        inits.extend([numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")])
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], pads=[k // 2] * 4))
        return name

    x = conv("stem", "image", 3, width, 3)
    for i in range(depth):
        y = conv(f"c{i}", x, width, width, 3)
        nodes.append(helper.make_node("Relu", [y], [f"r{i}"]))
        x = f"r{i}"
    logits = conv("head", x, width, 1, 1)
    nodes.append(helper.make_node("Sigmoid", [logits], ["mask"]))
    graph = helper.make_graph(
        nodes,
        "test_slow_segmenter",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.doc_string = "UNTRAINED test model (random weights): heavy on purpose, for async-inference tests only."
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", default=str(pathlib.Path(__file__).with_name("test_slow_segmenter.onnx")))
    args = ap.parse_args()
    onnx.save(build(), args.output)
    print(f"wrote {args.output}")
