#!/usr/bin/env python3
"""Makes the small ONNX models of the reliability tests (tests/reliability.rs) in tests/data/.

Every model is a few hundred bytes, has no weights worth the name and is deterministic, so the
files are committed and this script only needs to run again when a model changes:

    .venv/bin/python tests/data/make_bad_models.py

Valid ONNX models that break ffnetinfer's contract (one float/uint8/uint16 image input
1x3xHxW or 1xHxWx3, one float scores output 1xCxHxW or 1xHxWxC), each must be refused at
start with a message that names the problem:

- rank3_input.onnx     input 3x32x32 (no batch axis)
- int64_input.onnx     input int64 1x3x32x32
- two_inputs.onnx      two image inputs
- output_1d.onnx       scores output of rank 1 (1024)
- output_5d.onnx       scores output of rank 5 (1x1x1x32x32)
- detector.onnx        a detector's output 1x100x6 (boxes), not a score map
- classifier.onnx      a classifier's output 1x1000x1x1, not a score map
- one_row_map.onnx     output 1x1x1x32: legal but implausible (a one-pixel-high map): a warning

Models that keep the contract and are used to test behaviour:

- dynamic_hw.onnx      input 1x3xHxW with symbolic H and W; output 1x1xHxW = channel mean
                       (works only when segpreproc's width and height say the size)
- brightness.onnx      input 1x3x32x32, output mask 1x1x32x32 = mean over R,G,B: the scores
                       of a frame are its own brightness, so a test can tell which frame a
                       result came from (smoothing resets, cross-talk between pipelines)
- brightness_batch.onnx  brightness with a symbolic batch N (input Nx3x32x32, output
                       Nx1x32x32): ffnetinfer's batched shared instances (tests/shared_instance.rs)
- brightness_batch4.onnx  brightness with a fixed batch of 4 (input 4x3x32x32, output
                       4x1x32x32), as an NPU export: short batches are padded
- inverse_brightness.onnx  the same contract, output 1 - brightness (hot swap to a model with
                       the same output shape)
- fail_on_bright.onnx  input 1x3x32x32, output 1x1x32x32 = channel mean + table[i] where
                       i = int64(ReduceMax(image) * 1000) and table has 4 entries: black
                       frames run (i = 0), any frame with a pixel above 3/1000 fails inside
                       ONNX Runtime's Gather with an out-of-range index, at run time.
"""
import argparse
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
HERE = pathlib.Path(__file__).resolve().parent


def model(name, nodes, inputs, outputs, inits=(), doc=""):
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ffnetseg-tests")
    m.ir_version = 8
    m.doc_string = doc
    onnx.checker.check_model(m, full_check=True)
    return m


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def channel_mean(x, out, axis=1):
    axes = f"{out}_axes"
    return [
        helper.make_node("Constant", [], [axes], value=numpy_helper.from_array(np.array([axis], np.int64))),
        helper.make_node("ReduceMean", [x, axes], [out], keepdims=1),
    ] if OPSET >= 18 else [helper.make_node("ReduceMean", [x], [out], axes=[axis], keepdims=1)]


def build():
    S = 32
    out = {}
    out["rank3_input"] = model(
        "rank3_input", channel_mean("image", "mask", axis=0),
        [f32("image", [3, S, S])], [f32("mask", [1, S, S])],
        doc="contract breaker: rank-3 input (no batch axis)")
    out["int64_input"] = model(
        "int64_input",
        [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT)] + channel_mean("f", "mask"),
        [helper.make_tensor_value_info("image", TensorProto.INT64, [1, 3, S, S])], [f32("mask", [1, 1, S, S])],
        doc="contract breaker: int64 image input")
    out["two_inputs"] = model(
        "two_inputs",
        [helper.make_node("Add", ["image", "image2"], ["sum"])] + channel_mean("sum", "mask"),
        [f32("image", [1, 3, S, S]), f32("image2", [1, 3, S, S])], [f32("mask", [1, 1, S, S])],
        doc="contract breaker: two image inputs")
    shape1 = numpy_helper.from_array(np.array([S * S], np.int64), "shape1")
    out["output_1d"] = model(
        "output_1d", channel_mean("image", "m") + [helper.make_node("Reshape", ["m", "shape1"], ["mask"])],
        [f32("image", [1, 3, S, S])], [f32("mask", [S * S])], [shape1],
        doc="contract breaker: 1-D scores output")
    shape5 = numpy_helper.from_array(np.array([1, 1, 1, S, S], np.int64), "shape5")
    out["output_5d"] = model(
        "output_5d", channel_mean("image", "m") + [helper.make_node("Reshape", ["m", "shape5"], ["mask"])],
        [f32("image", [1, 3, S, S])], [f32("mask", [1, 1, 1, S, S])], [shape5],
        doc="contract breaker: 5-D scores output")
    # Outputs of the right rank that cannot be (or hardly are) segmentation maps: a Gemm
    # from the pooled image to N values, reshaped (weights zero: only the shapes matter).
    pooled = [helper.make_node("GlobalAveragePool", ["image"], ["p"]),
              helper.make_node("Flatten", ["p"], ["flat"])]
    for name, shape, doc in [
        ("detector", [1, 100, 6], "not a score map: a detector's 100 boxes of 6 values"),
        ("classifier", [1, 1000, 1, 1], "not a score map: a classifier's 1000 class scores"),
        ("one_row_map", [1, 1, 1, S], "legal but implausible: a score map one pixel high"),
    ]:
        n = int(np.prod(shape))
        w = numpy_helper.from_array(np.zeros((3, n), np.float32), f"{name}_w")
        shp = numpy_helper.from_array(np.array(shape, np.int64), f"{name}_shape")
        out[name] = model(
            name, pooled + [helper.make_node("MatMul", ["flat", f"{name}_w"], ["v"]),
                            helper.make_node("Reshape", ["v", f"{name}_shape"], ["mask"])],
            [f32("image", [1, 3, S, S])], [f32("mask", shape)], [w, shp], doc=doc)
    out["dynamic_hw"] = model(
        "dynamic_hw", channel_mean("image", "mask"),
        [f32("image", [1, 3, "H", "W"])], [f32("mask", [1, 1, "H", "W"])],
        doc="dynamic spatial dims: segpreproc's width and height decide the size")
    out["brightness"] = model(
        "brightness", channel_mean("image", "mask"),
        [f32("image", [1, 3, S, S])], [f32("mask", [1, 1, S, S])],
        doc="scores = per-pixel mean of R,G,B (a frame's own brightness)")
    out["brightness_batch"] = model(
        "brightness_batch", channel_mean("image", "mask"),
        [f32("image", ["N", 3, S, S])], [f32("mask", ["N", 1, S, S])],
        doc="scores = per-pixel mean of R,G,B for each frame of a batch of N")
    out["brightness_batch4"] = model(
        "brightness_batch4", channel_mean("image", "mask"),
        [f32("image", [4, 3, S, S])], [f32("mask", [4, 1, S, S])],
        doc="scores = per-pixel mean of R,G,B for each frame of a fixed batch of 4")
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    out["inverse_brightness"] = model(
        "inverse_brightness", channel_mean("image", "m") + [helper.make_node("Sub", ["one", "m"], ["mask"])],
        [f32("image", [1, 3, S, S])], [f32("mask", [1, 1, S, S])], [one],
        doc="scores = 1 - per-pixel mean of R,G,B")
    table = numpy_helper.from_array(np.array([0.25, 0.5, 0.75, 1.0], np.float32), "table")
    k = numpy_helper.from_array(np.array(1000.0, np.float32), "k")
    out["fail_on_bright"] = model(
        "fail_on_bright",
        [
            helper.make_node("ReduceMax", ["image"], ["max"], keepdims=0),
            helper.make_node("Mul", ["max", "k"], ["scaled"]),
            helper.make_node("Cast", ["scaled"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["offset"], axis=0),
        ]
        + channel_mean("image", "m")
        + [helper.make_node("Add", ["m", "offset"], ["mask"])],
        [f32("image", [1, 3, S, S])], [f32("mask", [1, 1, S, S])], [table, k],
        doc="runs on black frames (scores 0.25), fails at run time (Gather index out of range) on bright ones")
    return out


def check(models, directory):
    """Runs the behaviour models once with onnxruntime to prove they do what the tests expect."""
    import onnxruntime as ort

    def run(name, x):
        s = ort.InferenceSession(str(directory / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        return s.run(None, {"image": x})[0]

    black = np.zeros((1, 3, 32, 32), np.float32)
    white = np.ones((1, 3, 32, 32), np.float32)
    assert np.allclose(run("brightness", white), 1.0)
    assert np.allclose(run("inverse_brightness", white), 0.0)
    levels = np.array([0.0, 0.25, 0.5, 1.0], np.float32).reshape(4, 1, 1, 1)
    assert np.allclose(run("brightness_batch", np.ones((4, 3, 32, 32), np.float32) * levels), levels)
    assert np.allclose(run("brightness_batch4", np.ones((4, 3, 32, 32), np.float32) * levels), levels)
    assert run("dynamic_hw", np.ones((1, 3, 48, 64), np.float32)).shape == (1, 1, 48, 64)
    assert np.allclose(run("fail_on_bright", black), 0.25)
    try:
        run("fail_on_bright", white)
    except Exception as e:  # onnxruntime raises its own exception types
        assert "out of" in str(e) or "bounds" in str(e), e
    else:
        raise AssertionError("fail_on_bright ran on a white frame")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output-dir", default=str(HERE))
    args = ap.parse_args()
    d = pathlib.Path(args.output_dir)
    d.mkdir(parents=True, exist_ok=True)
    models = build()
    for name, m in models.items():
        onnx.save(m, str(d / f"{name}.onnx"))
        print(f"wrote {d / (name + '.onnx')} ({(d / (name + '.onnx')).stat().st_size} bytes)")
    check(models, d)
    print("checked with onnxruntime")
