#!/usr/bin/env python3
"""Makes two untrained test models for quantized input/output (like AI Hub w8a8 exports
with quantized I/O):

- models/test_quantized_io.onnx: uint8 input `image` 1x3x64x64 read by a DequantizeLinear
  (scale 0.02, zero point 10), one 3x3 convolution and a sigmoid, uint8 output `mask`
  1x1x64x64 written by a QuantizeLinear (scale 1/255, zero point 0);
- models/test_quantized_io_float.onnx: the same convolution with float32 input in [0,1] and
  float32 output, as the reference.

    .venv/bin/python models/make_test_quantized_io.py
"""
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).parent


def model(nodes, name, in_type, out_type, inits, doc):
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", in_type, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("mask", out_type, [1, 1, 64, 64])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    m.doc_string = doc
    onnx.checker.check_model(m)
    return m


def main():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((1, 3, 3, 3)) * 0.5).astype(np.float32)
    conv = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([0.0], np.float32), "b")]
    qparams = [
        numpy_helper.from_array(np.array(0.02, np.float32), "in_scale"),
        numpy_helper.from_array(np.array(10, np.uint8), "in_zp"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "out_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "out_zp"),
    ]
    quantized = model(
        [
            helper.make_node("DequantizeLinear", ["image", "in_scale", "in_zp"], ["x"]),
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Sigmoid", ["c"], ["p"]),
            helper.make_node("QuantizeLinear", ["p", "out_scale", "out_zp"], ["mask"]),
        ],
        "quantized_io",
        TensorProto.UINT8,
        TensorProto.UINT8,
        conv + qparams,
        "UNTRAINED test model: uint8 input (scale 0.02, zero point 10), uint8 output (scale 1/255)",
    )
    twin = model(
        [helper.make_node("Conv", ["image", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Sigmoid", ["c"], ["mask"])],
        "float_twin",
        TensorProto.FLOAT,
        TensorProto.FLOAT,
        conv,
        "UNTRAINED float twin of test_quantized_io.onnx",
    )
    onnx.save(quantized, HERE / "test_quantized_io.onnx")
    onnx.save(twin, HERE / "test_quantized_io_float.onnx")
    print("wrote models/test_quantized_io.onnx and models/test_quantized_io_float.onnx")


if __name__ == "__main__":
    main()
