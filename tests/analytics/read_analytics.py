#!/usr/bin/env python3
"""Reads ffnetseg's standard analytics metadata back through GStreamer's own API only
(GstAnalytics and GstVideo through GObject introspection), on GStreamer >= 1.26, and
checks it against the plugin's own outputs.

    read_analytics.py MEDIA MODEL [--frames N] [--names cityscapes|selfie]

Runs `MEDIA ! segpreproc ! ffnetinfer model=MODEL ! segpostproc mode=labels` and, for every
frame:
- the GstTensorMeta ffnetinfer attached (read at segpostproc's sink pad): one float32,
  row-major tensor whose id is the model's output name and whose dims and bytes equal the
  plugin's own FfnetsegScoresMeta;
- the GstAnalyticsRelationMeta on segpostproc's output: one semantic
  GstAnalyticsSegmentationMtd whose mask (read through its GstVideoMeta) equals the frame
  mode=labels output byte for byte, located over the whole frame, whose region ids are the
  labels present in that frame, and a GstAnalyticsClsMtd related to it (RELATE_TO) naming
  those regions (the names are written out below, not taken from the plugin), with the
  fraction of the frame each covers as its level.
Then the same pipeline with mode=overlay: its segmentation masks must equal the labels run's
(the mtd does not depend on what segpostproc draws).
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstAnalytics", "1.0")
from gi.repository import GLib, Gst, GstAnalytics, GstVideo  # noqa: E402

CITYSCAPES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
              "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
              "truck", "bus", "train", "motorcycle", "bicycle"]
SELFIE = ["background", "person"]


def plane(buf, width, height, stride):
    """The rows of a GRAY8 picture, without the stride's padding."""
    ok, info = buf.map(Gst.MapFlags.READ)
    assert ok, "cannot map"
    try:
        data = bytes(info.data)
    finally:
        buf.unmap(info)
    return b"".join(data[y * stride:y * stride + width] for y in range(height))


def tensor_from(buf):
    """(id, data type, dims order, dims, bytes) of each tensor of the buffer's GstTensorMeta."""
    meta = GstAnalytics.buffer_get_tensor_meta(buf)
    if meta is None:
        return []
    out = []
    for i in range(meta.num_tensors):
        t = meta.get(i)
        ok, info = t.data.map(Gst.MapFlags.READ)
        data = bytes(info.data)
        t.data.unmap(info)
        out.append((GLib.quark_to_string(t.id), t.data_type, t.dims_order, list(t.get_dims()), data))
    return out


def custom_scores(buf):
    meta = buf.get_custom_meta("FfnetsegScoresMeta")
    if meta is None:
        return None
    s = meta.get_structure()
    scores = s.get_value("scores")
    ok, info = scores.map(Gst.MapFlags.READ)
    data = bytes(info.data)
    scores.unmap(info)
    return s.get_value("classes"), s.get_value("height"), s.get_value("width"), s.get_value("layout"), data


def segmentation_from(buf):
    """(mask bytes, location, region ids, [(name, level)]) of the first semantic mtd."""
    rmeta = GstAnalytics.buffer_get_analytics_relation_meta(buf)
    if rmeta is None:
        return None
    n = GstAnalytics.relation_get_length(rmeta)
    for sid in range(n):
        ok, seg = rmeta.get_segmentation_mtd(sid)
        if not ok:
            continue
        mask, x, y, w, h = seg.get_mask()
        vmeta = GstVideo.buffer_get_video_meta(mask)
        assert vmeta is not None, "the mask has no GstVideoMeta"
        assert vmeta.format == GstVideo.VideoFormat.GRAY8, f"mask format {vmeta.format}"
        pixels = plane(mask, vmeta.width, vmeta.height, vmeta.stride[0])
        ids = [seg.get_region_id(i) for i in range(seg.get_region_count())]
        names = None
        for cid in range(n):
            ok, cls = rmeta.get_cls_mtd(cid)
            if ok and rmeta.get_relation(sid, cid) & GstAnalytics.RelTypes.RELATE_TO:
                names = [(GLib.quark_to_string(cls.get_quark(i)), cls.get_level(i))
                         for i in range(cls.get_length())]
        return pixels, (x, y, w, h), (vmeta.width, vmeta.height), ids, names
    return None


def run(media, model, mode, frames, size=None):
    """Per frame: (pts, output picture bytes, size, segmentation, tensors, custom scores).
    ``size`` (w, h) scales the frames first (a width that is not a multiple of 4 gives GRAY8
    rows with padding)."""
    scale = f"videoscale ! video/x-raw,width={size[0]},height={size[1]} ! " if size else ""
    pipeline = Gst.parse_launch(
        f"filesrc location={media} ! decodebin ! videoconvert ! {scale}segpreproc ! "
        f"ffnetinfer model={model} ! segpostproc name=post mode={mode} smoothing=1 ! "
        f"appsink name=sink sync=false max-buffers={frames + 5}")
    seen_in = {}

    def probe(pad, info):
        buf = info.get_buffer()
        seen_in[buf.pts] = (tensor_from(buf), custom_scores(buf))
        return Gst.PadProbeReturn.OK

    pipeline.get_by_name("post").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    out = []
    while len(out) < frames:
        sample = sink.emit("try-pull-sample", 20 * Gst.SECOND)
        if sample is None:
            break
        buf = sample.get_buffer()
        info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        picture = plane(buf, info.width, info.height, info.stride[0]) if mode == "labels" else None
        out.append((buf.pts, picture, (info.width, info.height), segmentation_from(buf)))
    bus_error = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if bus_error:
        sys.exit(f"FAIL: pipeline error {bus_error.parse_error()}")
    return [(pts, pic, size, seg) + seen_in.get(pts, (None, None)) for pts, pic, size, seg in out]


def check_labels_run(results, names):
    checked = 0
    for pts, labels, (w, h), seg, tensors, scores in results:
        assert seg is not None, f"frame {pts}: no segmentation mtd"
        mask, loc, mask_size, ids, classes = seg
        assert mask_size == (w, h), f"frame {pts}: mask {mask_size}, frame {(w, h)}"
        assert loc == (0, 0, w, h), f"frame {pts}: mask location {loc}"
        assert mask == labels, f"frame {pts}: the mtd mask differs from the mode=labels frame " \
            f"in {sum(a != b for a, b in zip(mask, labels))} pixels"
        present = sorted(set(labels))
        assert ids == present, f"frame {pts}: region ids {ids}, labels present {present}"
        assert classes is not None, f"frame {pts}: no classification related to the segmentation"
        assert [c for c, _ in classes] == [names[i] for i in ids], \
            f"frame {pts}: class names {[c for c, _ in classes]} for regions {ids}"
        for (name, level), i in zip(classes, ids):
            share = labels.count(i) / len(labels)
            assert abs(level - share) < 1e-4, f"frame {pts}: {name} level {level}, covers {share}"
        assert scores is not None, f"frame {pts}: no FfnetsegScoresMeta at segpostproc's input"
        assert len(tensors) == 1, f"frame {pts}: {len(tensors)} tensors"
        tid, dtype, order, dims, data = tensors[0]
        c, th, tw, layout, sdata = scores
        want = [1, c, th, tw] if layout == "nchw" else [1, th, tw, c]
        assert dtype == GstAnalytics.TensorDataType.FLOAT32, f"tensor type {dtype}"
        assert order == GstAnalytics.TensorDimOrder.ROW_MAJOR, f"dims order {order}"
        assert dims == want, f"tensor dims {dims}, scores meta {want}"
        assert data == sdata, "the tensor's bytes differ from FfnetsegScoresMeta's"
        checked += 1
    return checked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("media")
    ap.add_argument("model")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", help="scale the frames to WxH first (e.g. 638x359: padded GRAY8 rows)")
    ap.add_argument("--names", choices=["cityscapes", "selfie"], required=True)
    ap.add_argument("--output-id", required=True, help="the model's ONNX output name")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x")) if a.size else None
    Gst.init(None)
    names = CITYSCAPES if a.names == "cityscapes" else SELFIE
    labels_run = run(a.media, a.model, "labels", a.frames, size)
    if len(labels_run) < a.frames:
        sys.exit(f"FAIL: {len(labels_run)} of {a.frames} frames")
    checked = check_labels_run(labels_run, names)
    ids = {t[4][0][0] for t in labels_run}
    assert ids == {a.output_id}, f"tensor ids {ids}, expected {a.output_id!r}"
    overlay_run = run(a.media, a.model, "overlay", a.frames, size)
    by_pts = {pts: seg for pts, _, _, seg, _, _ in overlay_run}
    same = 0
    for pts, labels, _, _, _, _ in labels_run:
        seg = by_pts.get(pts)
        assert seg is not None, f"mode=overlay frame {pts}: no segmentation mtd"
        assert seg[0] == labels, f"mode=overlay frame {pts}: mtd mask differs from mode=labels"
        same += 1
    first = labels_run[0]
    regions = ", ".join(f"{n} {lvl:.3f}" for n, lvl in first[3][4])
    print(f"PASS {a.model}: {checked} frames {first[2][0]}x{first[2][1]}: segmentation mtd mask == "
          f"mode=labels frame, region ids == labels present, names ({a.names}) and levels right; "
          f"GstTensor '{a.output_id}' {first[4][0][3]} float32 == FfnetsegScoresMeta bytes; "
          f"{same} mode=overlay masks == mode=labels frames. First frame regions: {regions}")


if __name__ == "__main__":
    main()
