#!/usr/bin/env python3
"""segpostproc fed by GStreamer's own onnxinference through GstTensorMeta (GStreamer 1.26).

    upstream_tensor.py MEDIA MODEL [--frames N]

onnxinference (gst-plugins-bad 1.26) attaches each model output as a GstTensor whose id it
looks up in the model's metadata (metadata_props: output name -> tensor id); a model without
that entry is refused ("Failed to look up id for key ..."). So this writes a copy of MODEL
with `mask -> ffnetseg-selfie-mask` added, then compares, frame by frame (256x256, the
model's input size, so neither route letterboxes; RGB, so both get the same pixels):

  A: videoconvert ! videoscale ! onnxinference ! segpostproc tensor-id=ffnetseg-selfie-mask mode=labels
  B: videoconvert ! videoscale ! segpreproc ! ffnetinfer ! segpostproc mode=labels

The two routes convert colours and run ONNX Runtime differently (Debian's libonnxruntime
vs the venv's), so the masks must agree on >= 98% of the pixels, not byte for byte; both must
find people (vtest.avi has them). A third run with a tensor-id no tensor has must output
empty masks and warn, naming the ids the frames carry. And ffnetinfer names its GstTensor
the same way: the output name, the model's metadata entry, or a .modelinfo output `id`.
"""
import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

from read_analytics import plane  # noqa: E402  (this script's folder)

TENSOR_ID = "ffnetseg-selfie-mask"
SIZE = 256


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_metadata(model, out, key, value):
    """A copy of the ONNX file with one more metadata_props entry (ModelProto field 14, a
    StringStringEntryProto of key = 1, value = 2): protobuf allows appending a field."""
    entry = b"\x0a" + varint(len(key)) + key.encode() + b"\x12" + varint(len(value)) + value.encode()
    with open(model, "rb") as f:
        data = f.read()
    with open(out, "wb") as f:
        f.write(data + b"\x72" + varint(len(entry)) + entry)


def masks(description, frames):
    pipeline = Gst.parse_launch(description + f" ! appsink name=sink sync=false max-buffers={frames + 5}")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    out, warnings = [], []
    while len(out) < frames:
        sample = sink.emit("try-pull-sample", 20 * Gst.SECOND)
        if sample is None:
            break
        buf = sample.get_buffer()
        info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        out.append(plane(buf, info.width, info.height, info.stride[0]))
    bus = pipeline.get_bus()
    while True:
        msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
        if msg is None:
            break
        if msg.type == Gst.MessageType.ERROR:
            pipeline.set_state(Gst.State.NULL)
            sys.exit(f"FAIL: {description}: {msg.parse_error()}")
        warnings.append(str(msg.parse_warning()[0].message))
    pipeline.set_state(Gst.State.NULL)
    return out, warnings


def ffnetinfer_tensor_ids(src, model):
    """The GstTensor ids ffnetinfer attaches with `model`."""
    gi.require_version("GstAnalytics", "1.0")
    from gi.repository import GLib, GstAnalytics
    pipeline = Gst.parse_launch(f"{src} ! segpreproc ! ffnetinfer model={model} ! appsink name=sink sync=false")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    sample = sink.emit("try-pull-sample", 20 * Gst.SECOND)
    pipeline.set_state(Gst.State.NULL)
    assert sample is not None, f"no frame from ffnetinfer model={model}"
    meta = GstAnalytics.buffer_get_tensor_meta(sample.get_buffer())
    return [GLib.quark_to_string(meta.get(i).id) for i in range(meta.num_tensors)]


def check_ffnetinfer_ids(src, model, model_with_id, work):
    """ffnetinfer names its tensor as onnxinference would (the model's metadata), a
    .modelinfo output `id` (GStreamer 1.28) first, the output name last."""
    assert ffnetinfer_tensor_ids(src, model) == ["mask"]
    assert ffnetinfer_tensor_ids(src, model_with_id) == [TENSOR_ID]
    with_info = os.path.join(work, "selfie_with_modelinfo.onnx")
    with_metadata(model_with_id, with_info, "unused", "x")
    with open(os.path.join(work, "selfie_with_modelinfo.modelinfo"), "w") as f:
        f.write("[modelinfo]\nversion=1.0\n\n[mask]\ndir=output\ntype=float32\nid=from-modelinfo\n")
    ids = ffnetinfer_tensor_ids(src, with_info)
    assert ids == ["from-modelinfo"], ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("media")
    ap.add_argument("model")
    ap.add_argument("--frames", type=int, default=10)
    a = ap.parse_args()
    Gst.init(None)
    work = os.path.join(os.path.dirname(os.path.abspath(a.media)), "upstream")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "selfie_segmentation_with_tensor_id.onnx")
    with_metadata(a.model, model, "mask", TENSOR_ID)
    src = (f"filesrc location={a.media} ! decodebin ! videoconvert ! videoscale ! "
           f"video/x-raw,width={SIZE},height={SIZE},format=RGB")
    upstream = (f"{src} ! onnxinference input-image-format=hwc input-tensor-scale=255 "
                f"model-file={model} ! segpostproc mode=labels smoothing=1")
    ours = f"{src} ! segpreproc ! ffnetinfer model={a.model} ! segpostproc mode=labels smoothing=1"
    up, _ = masks(f"{upstream} tensor-id={TENSOR_ID}", a.frames)
    ref, _ = masks(ours, a.frames)
    if len(up) < a.frames or len(ref) < a.frames:
        sys.exit(f"FAIL: {len(up)} and {len(ref)} of {a.frames} frames")
    worst = 1.0
    for i, (x, y) in enumerate(zip(up, ref)):
        agree = sum(p == q for p, q in zip(x, y)) / len(x)
        worst = min(worst, agree)
        people_up, people_ref = x.count(1) / len(x), y.count(1) / len(y)
        assert people_up > 0.005 and people_ref > 0.005, \
            f"frame {i}: person share {people_up:.4f} (onnxinference) {people_ref:.4f} (ffnetinfer)"
        assert agree >= 0.98, f"frame {i}: masks agree on {agree:.4f} of the pixels"
    check_ffnetinfer_ids(src, a.model, model, work)
    wrong, warnings = masks(f"{upstream} tensor-id=no-such-tensor", 3)
    assert all(m.count(0) == len(m) for m in wrong), "tensor-id=no-such-tensor: masks not empty"
    assert any(TENSOR_ID in w for w in warnings), f"no warning naming {TENSOR_ID}: {warnings}"
    print(f"PASS onnxinference ! segpostproc tensor-id={TENSOR_ID}: {len(up)} frames {SIZE}x{SIZE}, "
          f"labels agree with segpreproc ! ffnetinfer on >= {100 * worst:.2f}% of the pixels; "
          f"an unknown tensor-id gives empty masks and warns: {warnings[0]!r}; ffnetinfer's "
          f"GstTensor id: 'mask' (output name), '{TENSOR_ID}' (model metadata), "
          f"'from-modelinfo' (.modelinfo)")


if __name__ == "__main__":
    main()
