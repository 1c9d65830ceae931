#!/usr/bin/env python3
"""Batch 4 vs 4 x batch 1 on the QNN HTP backend (the x86-64 simulator here).

Selfie model: the dynamic-batch model is made static for QNN with ONNX Runtime's
free-dimension override (batch=4), so every node runs on QNN (CPU fallback disabled); the
batch-1 model runs four times. Prints the largest difference of the outputs and the time of
each way, twice. Then, where `make models` made them (out/models), FFNet-78S-LowRes W8A8 with
quantized I/O: the batch-4 export once on 4 real frames against the batch-1 model on each
(about a minute each way: the simulator emulates 20 GMACs per frame on the CPU).
Run with the venv of `make venv` (onnxruntime + onnxruntime-qnn):

    .venv/bin/python pipelines/bench-qnn-batch.py
"""
import os
import time

import numpy as np
import onnxruntime as ort
import onnxruntime_qnn

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
single = os.path.join(root, "models/selfie_segmentation.onnx")
batched = os.path.join(root, "models/selfie_segmentation_batch.onnx")
lib = os.path.join(os.path.dirname(onnxruntime_qnn.__file__), "libonnxruntime_providers_qnn.so")
ort.register_execution_provider_library("QNNExecutionProvider", lib)
qnn = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"][0]


def session(path, batch=None):
    so = ort.SessionOptions()
    if batch:
        so.add_free_dimension_override_by_name("batch", batch)
    so.add_provider_for_devices([qnn], {"backend_type": "htp"})
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return ort.InferenceSession(path, so)


frames = np.random.default_rng(0).random((4, 256, 256, 3), dtype=np.float32)
one, four = session(single), session(batched, 4)
name1, name4 = one.get_inputs()[0].name, four.get_inputs()[0].name
each = [one.run(None, {name1: frames[k : k + 1]})[0][0] for k in range(4)]
together = four.run(None, {name4: frames})[0]
print("max |batch 4 - 4 x batch 1|:", max(float(np.abs(together[k] - each[k]).max()) for k in range(4)))
for rep in range(2):
    t = time.perf_counter()
    for _ in range(3):
        for k in range(4):
            one.run(None, {name1: frames[k : k + 1]})
    a = (time.perf_counter() - t) / 3
    t = time.perf_counter()
    for _ in range(3):
        four.run(None, {name4: frames})
    b = (time.perf_counter() - t) / 3
    print(f"run {rep}: 4 x batch 1 {a * 1000:.0f} ms, one batch 4 {b * 1000:.0f} ms, ratio {a / b:.2f}")


def ffnet(out_models):
    """FFNet-78S-LowRes W8A8 quantized I/O, batch 4 vs 4 x batch 1, once, on real frames."""
    import sys

    paths = [os.path.join(out_models, f"ffnet_78s_lowres_w8a8_qio{s}.onnx") for s in ("_batch4", "")]
    if not all(os.path.exists(p) for p in paths):
        print("FFNet-78S-LowRes: not measured (make models makes its batch-4 export)")
        return
    sys.path.insert(0, os.path.join(root, "models", "ffnet"))
    import media

    images = media.image_set("valid", 2, 2)[:4]
    x = np.concatenate([(media.to_input(im, (1, 3, 512, 1024), "nchw") * 255).round().astype(np.uint8)
                        for im in images])
    four, one = session(paths[0]), session(paths[1])
    t = time.perf_counter()
    y4 = four.run(None, {"image": x})[0]
    a = time.perf_counter() - t
    t = time.perf_counter()
    y1 = np.concatenate([one.run(None, {"image": x[k : k + 1]})[0] for k in range(4)])
    b = time.perf_counter() - t
    steps = int(np.abs(y4.astype(int) - y1.astype(int)).max())
    print(f"FFNet-78S-LowRes W8A8 quantized I/O, 4 real frames: max |batch 4 - 4 x batch 1| {steps} "
          f"output steps; one batch 4 {a:.1f} s, 4 x batch 1 {b:.1f} s, ratio {b / a:.2f}")


ffnet(os.path.join(root, "out", "models"))
