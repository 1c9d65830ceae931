"""Batch variants of an FFNet variant, for ffnetinfer's shared instances (several cameras'
frames in one inference: shared-instance=NAME batch-size=N).

    {variant}_batch.onnx         FP32, symbolic batch ("batch"): CPU/GPU providers
    {variant}_w8a8_batch.onnx    W8A8, symbolic batch
    {variant}_w8a8_batch4.onnx   W8A8, batch fixed to 4: for NPU compilers that want static
                                 shapes (ffnetinfer also fixes a symbolic batch for QNN itself)
    {variant}_w8a8_qio_batch4.onnx  the same with quantized I/O (uint8 in and out, the
                                 boundary Q/DQ removed): wholly on the NPU

The FP32 model is exported again with a symbolic batch (the batch-1 export bakes the batch
into its Resize sizes, so editing its input shape is not enough). The W8A8 one is quantized
like {variant}_w8a8.onnx (same scheme, same calibration frames) from that export with its
batch fixed to 1, then the batch is made symbolic again: the Shape ops that feed Resize stay
in the graph, so any batch runs. Each variant is checked slot by slot on real held-out frames
against its batch-1 counterpart, and the batch-4 models' placement is read on the QNN HTP
simulator where the onnxruntime-qnn wheel is installed.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

import media  # noqa: E402
from make_dynamic_batch import make_symbolic  # noqa: E402

CHECK_BATCH = 4


def with_batch(src: str, dst: str, batch: int) -> None:
    """A copy of ``src`` with its batch fixed to ``batch`` (0: symbolic "batch")."""
    import onnx

    m = onnx.load(src)
    make_symbolic(m, batch)
    onnx.save(m, dst)


def slot_check(single: str, batched: str, images) -> float:
    """Max |difference| between each slot of one batched run of ``batched`` on real frames
    and ``single`` (batch 1) on that frame alone, relative to the largest |score|."""
    import onnxruntime as ort

    name, shape, layout = media.input_contract(single)
    frames = np.concatenate([media.to_input(im, shape, layout) for im in images[:CHECK_BATCH]])
    one = ort.InferenceSession(single, providers=["CPUExecutionProvider"])
    many = ort.InferenceSession(batched, providers=["CPUExecutionProvider"])
    together = many.run(None, {many.get_inputs()[0].name: frames})[0]
    each = np.concatenate([one.run(None, {name: f[None]})[0] for f in frames])
    return float(np.abs(together - each).max() / max(float(np.abs(each).max()), 1e-12))


def build(model, variant: str, height: int, width: int, trained: bool, out_dir: str,
          calib, valid, simulator: bool, log) -> dict:
    """Writes the three batch variants of ``model`` next to {variant}.onnx and
    {variant}_w8a8.onnx (which must exist); returns what was made and measured."""
    import export as E
    import qnn
    import quantize as Q

    t = time.time()
    path = lambda suffix: os.path.join(out_dir, f"{variant}{suffix}.onnx")  # noqa: E731
    fp32, w8a8 = path(""), path("_w8a8")
    fp32_batch, w8a8_batch, w8a8_batch4 = path("_batch"), path("_w8a8_batch"), path("_w8a8_batch4")
    qio_batch4 = path("_w8a8_qio_batch4")
    E.export(model, fp32_batch, height, width, trained=trained, dynamic_batch=True)
    fixed_to_one = path("_batch_as1")
    with_batch(fp32_batch, fixed_to_one, 1)
    Q.quantize(fixed_to_one, w8a8_batch, "w8a8", calib)
    os.remove(fixed_to_one)
    with_batch(w8a8_batch, w8a8_batch, 0)
    with_batch(w8a8_batch, w8a8_batch4, 4)
    Q.quantized_io(w8a8_batch4, qio_batch4)
    r = {"paths": [fp32_batch, w8a8_batch, w8a8_batch4, qio_batch4],
         "slot_diff": {"fp32_batch": slot_check(fp32, fp32_batch, valid),
                       "w8a8_batch": slot_check(w8a8, w8a8_batch, valid),
                       "w8a8_batch4": slot_check(w8a8, w8a8_batch4, valid)}}
    if r["slot_diff"]["fp32_batch"] > 1e-4:
        raise RuntimeError(f"{fp32_batch} disagrees with {fp32}: {r['slot_diff']}")
    if simulator:
        r["placement_batch4"] = qnn.placement(w8a8_batch4)
        r["placement_qio_batch4"] = qnn.placement(qio_batch4)
    r["seconds"] = time.time() - t
    log(f"{variant}: batch variants {', '.join(os.path.basename(p) for p in r['paths'])}; "
        "batch of 4 real frames vs batch-1 model, max |diff| / max |score|: "
        + ", ".join(f"{k} {v:.2g}" for k, v in r["slot_diff"].items())
        + (f"; on the QNN HTP simulator: batch 4 {qnn.describe(r['placement_batch4'])}, "
           f"quantized-I/O batch 4 {qnn.describe(r['placement_qio_batch4'])}" if simulator else ""))
    return r
