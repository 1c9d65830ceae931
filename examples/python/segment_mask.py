#!/usr/bin/python3
"""Segmentation masks in a Python application, through GStreamer's gi bindings.

    filesrc ! decodebin ! videoconvert ! segpreproc ! ffnetinfer model=…
            ! segpostproc mode=mask ! appsink

For each frame it prints the foreground fraction of the GRAY8 mask (pixels > 127) and what
ffnetinfer recorded in the frame's FfnetsegScoresMeta (a GstCustomMeta holding a
GstStructure): the execution provider, the inference time and the frame the scores came from.

Needs Debian's python3-gi and gir1.2-gst-plugins-base-1.0, which are for the system Python:
run it with /usr/bin/python3 (not a pyenv/venv python). The elements come from the
installed plugin (`make install` puts it in ~/.local/share/gstreamer-1.0/plugins), or from
GST_PLUGIN_PATH.

    /usr/bin/python3 examples/python/segment_mask.py --frames 10
"""

import argparse
import os
import sys
import time

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstApp", "1.0")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import Gst, GstApp, GstVideo  # noqa: F401  (GstApp: appsink methods)
except (ImportError, ValueError) as e:
    sys.exit(
        f"error: {e}\nThis example needs GStreamer's Python bindings: apt-get install python3-gi "
        "gir1.2-gst-plugins-base-1.0, and run it with /usr/bin/python3"
    )

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_INPUT = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
DEFAULT_MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "models", "selfie_segmentation.onnx"))
SCORES_META = "FfnetsegScoresMeta"
# Bytes 0..127 are background in a mask: deleting them leaves the foreground pixels.
BACKGROUND = bytes(range(128))


def quote(value):
    """A value for gst_parse_launch: double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def foreground_fraction(buf, info):
    """Fraction of mask pixels above 127, row by row (rows may be padded to the stride)."""
    ok, mapinfo = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise RuntimeError("cannot map the mask buffer")
    try:
        data = mapinfo.data
        width, height = info.width, info.height
        meta = GstVideo.buffer_get_video_meta(buf)
        stride = meta.stride[0] if meta else info.stride[0]
        offset = meta.offset[0] if meta else info.offset[0]
        fg = 0
        for y in range(height):
            row = data[offset + y * stride: offset + y * stride + width]
            fg += len(row.translate(None, BACKGROUND))
        return fg / (width * height)
    finally:
        buf.unmap(mapinfo)


def scores_meta(buf):
    """The fields ffnetinfer recorded, as a dict, or None when the frame carries no scores."""
    meta = buf.get_custom_meta(SCORES_META)
    if meta is None:
        return None
    s = meta.get_structure()
    fields = {}
    for name, getter in (("classes", s.get_uint), ("width", s.get_uint), ("height", s.get_uint),
                         ("inference-ns", s.get_uint64), ("sequence", s.get_uint64),
                         ("source-pts", s.get_uint64)):
        ok, value = getter(name)
        fields[name] = value if ok else None
    fields["provider"] = s.get_string("provider")
    fields["layout"] = s.get_string("layout")
    return fields


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=30, help="frames to segment (0 = whole file; default 30)")
    ap.add_argument("--input", default=DEFAULT_INPUT, help=f"video or image file (default {DEFAULT_INPUT})")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="ONNX model (default: the checkout's selfie model)")
    ap.add_argument("--blur", type=int, default=1, help="segpostproc blur (odd; 1 = hard 0/255 mask)")
    args = ap.parse_args()
    for what, path in (("input", args.input), ("model", args.model)):
        if not os.path.isfile(path):
            sys.exit(f"error: the {what} {path} does not exist")

    Gst.init(None)
    for factory in ("segpreproc", "ffnetinfer", "segpostproc"):
        if Gst.ElementFactory.find(factory) is None:
            sys.exit(
                f"error: GStreamer has no {factory} element: install the plugin (make install puts "
                "it in ~/.local/share/gstreamer-1.0/plugins) or set GST_PLUGIN_PATH to its folder"
            )

    description = (
        f"filesrc location={quote(args.input)} ! decodebin ! videoconvert ! segpreproc ! "
        f"ffnetinfer model={quote(args.model)} ! segpostproc mode=mask blur={args.blur} ! "
        "appsink name=sink sync=false"
    )
    pipeline = Gst.parse_launch(description)
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)

    started = time.monotonic()
    fractions, inference_ms = [], []
    frames = 0
    provider = None
    error = None
    try:
        while args.frames <= 0 or frames < args.frames:
            msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
            if msg is not None:
                if msg.type == Gst.MessageType.ERROR:
                    err, debug = msg.parse_error()
                    error = f"pipeline error from {msg.src.get_name()}: {err.message}"
                    break
                warn, _ = msg.parse_warning()
                print(f"warning: {warn.message}", file=sys.stderr)
                continue
            sample = sink.try_pull_sample(200 * Gst.MSECOND)
            if sample is None:
                if sink.is_eos():
                    break
                if time.monotonic() - started > 120:
                    error = "no frame for two minutes"
                    break
                continue
            buf = sample.get_buffer()
            info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
            if info.finfo.format != GstVideo.VideoFormat.GRAY8:
                error = f"expected a GRAY8 mask, got {sample.get_caps().to_string()}"
                break
            fraction = foreground_fraction(buf, info)
            meta = scores_meta(buf)
            pts = buf.pts / Gst.SECOND if buf.pts != Gst.CLOCK_TIME_NONE else float("nan")
            frames += 1
            if meta is None:
                # ffnetinfer mode=async: frames before the first finished inference.
                print(f"frame {frames - 1:3d}  pts {pts:7.3f} s  no result yet (no {SCORES_META})")
                continue
            ms = meta["inference-ns"] / 1e6 if meta["inference-ns"] is not None else float("nan")
            age = ""
            if meta["source-pts"] is not None and buf.pts != Gst.CLOCK_TIME_NONE:
                age = f"  result age {(buf.pts - meta['source-pts']) / 1e6:.1f} ms"
            if not fractions:  # the first frame with scores
                print(f"mask {info.width}×{info.height}; scores {meta['width']}×{meta['height']}×"
                      f"{meta['classes']} {meta['layout']}; model {args.model}")
            print(f"frame {frames - 1:3d}  pts {pts:7.3f} s  foreground {100 * fraction:5.1f}%  "
                  f"inference {ms:6.2f} ms on {meta['provider']} (result #{meta['sequence']}){age}")
            fractions.append(fraction)
            inference_ms.append(ms)
            provider = meta["provider"]
    finally:
        pipeline.set_state(Gst.State.NULL)

    if error:
        sys.exit(f"error: {error}")
    if frames == 0:
        sys.exit("error: no frame came out of the pipeline")
    if not fractions:
        sys.exit(f"error: no frame carried {SCORES_META}: is ffnetinfer in the pipeline?")
    secs = time.monotonic() - started
    n = len(fractions)
    print(f"{frames} frames ({n} with a result) in {secs:.2f} s ({frames / secs:.1f} frames per second); mean foreground "
          f"{100 * sum(fractions) / n:.1f}%, mean inference {sum(inference_ms) / n:.2f} ms on {provider}")


if __name__ == "__main__":
    main()
