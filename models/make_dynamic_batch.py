#!/usr/bin/env python3
"""Makes a copy of an ONNX model whose batch dimension is symbolic ("batch"), so that
ffnetinfer's shared instances (shared-instance=NAME batch-size=N) run the frames of N
streams in one inference; or, with --batch N, fixed to N frames (a static model for an NPU
compiler that wants one; ffnetinfer also fixes a symbolic batch itself for QNN).

    python models/make_dynamic_batch.py                       # the shipped selfie model
    python models/make_dynamic_batch.py IN.onnx OUT.onnx
    python models/make_dynamic_batch.py --batch 4 IN.onnx OUT_batch4.onnx

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


def make_symbolic(model: onnx.ModelProto, batch: int = 0) -> list:
    """Edits `model` in place (batch 0: symbolic, else fixed to `batch`); returns the names
    of the Reshape shapes it changed."""
    g = model.graph
    for v in list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims) < 2 or dims[0].dim_value not in (0, 1):
            sys.exit(f"{v.name}: first dimension is not a batch of 1 ({dims[0]})")
        if batch:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch
        else:
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
    integer = {"tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16}.get(inp.type)
    if integer:  # a quantized-I/O model takes the tensor's integer codes
        frames = (frames * np.iinfo(integer).max).astype(integer)
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
    ap.add_argument("--batch", type=int, default=0, help="fix the batch to N frames (default: symbolic)")
    args = ap.parse_args()
    model = onnx.load(args.input)
    changed = make_symbolic(model, args.batch)
    made = f"fixed to {args.batch}" if args.batch else "made symbolic"
    model.doc_string = (model.doc_string + "\n" if model.doc_string else "") + (
        f"Batch dimension {made} by models/make_dynamic_batch.py from {pathlib.Path(args.input).name}"
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, args.output)
    print(f"wrote {args.output}; Reshape shapes made batch-free: {', '.join(changed) or 'none'}")
    batch = args.batch or 4
    worst = check(pathlib.Path(args.input), pathlib.Path(args.output), batch)
    print(f"batch of {batch} vs batch-1 runs, max |difference| per slot: {worst:.3g}")
    if worst > 1e-4:
        sys.exit("the batched model does not match the original")


if __name__ == "__main__":
    main()
