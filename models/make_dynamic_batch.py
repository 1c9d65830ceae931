#!/usr/bin/env python3
"""Makes a copy of an ONNX model whose batch dimension is symbolic ("batch"), so that
ffnetinfer's shared instances (shared-instance=NAME batch-size=N) run the frames of N
streams in one inference.

    python models/make_dynamic_batch.py                       # the shipped selfie model
    python models/make_dynamic_batch.py IN.onnx OUT.onnx

Default: models/selfie_segmentation.onnx -> models/selfie_segmentation_batch.onnx.
Needs the `onnx` and `numpy` packages (and `onnxruntime` for the check at the end), e.g. in
a venv: python3 -m venv out/venv && out/venv/bin/pip install onnx numpy onnxruntime.

What changes besides the input and output shapes:
- Reshape nodes whose target shape is a constant starting with 1 (the selfie model has six,
  [1, 1, 1, C], the squeeze-and-excite blocks' pooled vectors) get -1 there: with a batch
  of N, a hard-coded 1 would fold the N frames' vectors together or fail.
- The recorded intermediate shapes (value_info) are dropped: they say batch 1 and ONNX
  Runtime infers them again at load.
The weights and every other node are untouched. At the end the script runs the new model
on a batch of 4 different frames and checks that each slot's scores equal the original
model's on that frame alone.
"""
import argparse
import pathlib
import sys

import numpy as np
import onnx
from onnx import numpy_helper

HERE = pathlib.Path(__file__).resolve().parent


def make_symbolic(model: onnx.ModelProto) -> list:
    """Edits `model` in place; returns the names of the Reshape shapes it changed."""
    g = model.graph
    for v in list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims) < 2 or dims[0].dim_value not in (0, 1):
            sys.exit(f"{v.name}: first dimension is not a batch of 1 ({dims[0]})")
        dims[0].ClearField("dim_value")
        dims[0].dim_param = "batch"
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    changed = []
    for node in g.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        name = node.input[1]
        if name in inits:
            target = inits[name]
        elif name in consts:
            target = consts[name].attribute[0].t
        else:
            sys.exit(f"{node.name}: the Reshape's shape is computed, not a constant; check it by hand")
        shape = numpy_helper.to_array(target)
        if shape.size and shape[0] == 1 and name not in changed:
            shape = shape.copy()
            shape[0] = -1
            target.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), target.name))
            changed.append(name)
    del g.value_info[:]
    return changed


def check(original: pathlib.Path, batched: pathlib.Path, batch: int = 4) -> float:
    """Max |difference| between each slot of a batched run and the original on that frame."""
    import onnxruntime as ort

    one = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    many = ort.InferenceSession(str(batched), providers=["CPUExecutionProvider"])
    inp = one.get_inputs()[0]
    shape = [batch] + list(inp.shape[1:])
    rng = np.random.default_rng(7)
    frames = rng.random(shape, dtype=np.float32)
    # Distinct brightness per slot as well, so a mix-up of slots shows.
    frames *= np.linspace(0.25, 1.0, batch, dtype=np.float32).reshape([batch] + [1] * (len(shape) - 1))
    out = many.run(None, {inp.name: frames})[0]
    worst = 0.0
    for i in range(batch):
        ref = one.run(None, {inp.name: frames[i : i + 1]})[0]
        worst = max(worst, float(np.abs(out[i : i + 1] - ref).max()))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", default=str(HERE / "selfie_segmentation.onnx"))
    ap.add_argument("output", nargs="?", default=str(HERE / "selfie_segmentation_batch.onnx"))
    args = ap.parse_args()
    model = onnx.load(args.input)
    changed = make_symbolic(model)
    model.doc_string = (model.doc_string + "\n" if model.doc_string else "") + (
        f"Batch dimension made symbolic by models/make_dynamic_batch.py from {pathlib.Path(args.input).name}"
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, args.output)
    print(f"wrote {args.output}; Reshape shapes made batch-free: {', '.join(changed) or 'none'}")
    worst = check(pathlib.Path(args.input), pathlib.Path(args.output))
    print(f"batch of 4 vs batch-1 runs, max |difference| per slot: {worst:.3g}")
    if worst > 1e-4:
        sys.exit("the batched model does not match the original")


if __name__ == "__main__":
    main()
