#!/usr/bin/python3
"""Several cameras, one model, in a Python application (docs/multicam.md).

For each camera given on the command line it builds

    SOURCE ! videoconvert ! videoscale ! segpreproc
           ! ffnetinfer shared-instance=cams batch-size=N ! segpostproc ! queue ! grid.

and tiles the streams with one compositor onto the display (or fakesink with --headless).
Every ffnetinfer names the same shared instance, so the process holds one model session,
and one inference runs up to N cameras' frames. A pad probe after each ffnetinfer reads the
scores meta and counts, per camera, the frames, those with a result, and the batches they
ran in; the summary at the end shows that each camera was served.

    /usr/bin/python3 examples/python/multi_camera.py /dev/video0 /dev/video2
    /usr/bin/python3 examples/python/multi_camera.py --files a.mp4 b.mp4 c.mp4
    /usr/bin/python3 examples/python/multi_camera.py --test 4 --frames 30 --headless --sync

Needs Debian's python3-gi and gir1.2-gst-plugins-base-1.0 (run with /usr/bin/python3) and
the installed plugin (`make install`) or GST_PLUGIN_PATH.
"""

import argparse
import math
import os
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst
except (ImportError, ValueError) as e:
    sys.exit(
        f"error: {e}\nThis example needs GStreamer's Python bindings: apt-get install python3-gi "
        "gir1.2-gst-plugins-base-1.0, and run it with /usr/bin/python3"
    )

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "models", "selfie_segmentation_batch.onnx"))
SCORES_META = "FfnetsegScoresMeta"
PATTERNS = ["ball", "smpte", "snow", "pinwheel", "spokes", "gradient"]


def make(factory, **props):
    element = Gst.ElementFactory.make(factory, None)
    if element is None:
        sys.exit(f"error: GStreamer has no {factory} element (for ours: make install, or GST_PLUGIN_PATH)")
    for name, value in props.items():
        element.set_property(name.replace("_", "-"), value)
    return element


def source(args, i, where):
    """The source elements of camera i: a camera, a file (decodebin) or a test pattern."""
    if args.test:
        return [make("videotestsrc", pattern=PATTERNS[i % len(PATTERNS)], is_live=not args.frames,
                     num_buffers=args.frames or -1)]
    if args.files:
        return [make("filesrc", location=where), make("decodebin")]
    return [make("v4l2src", device=where)]


class Camera:
    """One camera's chain into the grid, and what its frames carried."""

    def __init__(self, pipeline, grid, args, i, where, batch):
        self.name, self.frames, self.results, self.batches = where, 0, 0, {}
        self.instances = set()
        caps = Gst.Caps.from_string(f"video/x-raw,width={args.tile[0]},height={args.tile[1]},pixel-aspect-ratio=1/1")
        infer = make("ffnetinfer", model=args.model, provider=args.provider, shared_instance="cams",
                     batch_size=batch, mode="sync" if args.sync else "async")
        chain = source(args, i, where) + [
            make("videoconvert"), make("videoscale"), make("capsfilter", caps=caps),
            make("segpreproc"), infer, make("segpostproc", mode=args.mode), make("videoconvert"), make("queue"),
        ]
        for element in chain:
            pipeline.add(element)
        link_chain(chain)
        pad = grid.request_pad_simple("sink_%u")
        pad.set_property("xpos", (i % args.cols) * args.tile[0])
        pad.set_property("ypos", (i // args.cols) * args.tile[1])
        chain[-1].get_static_pad("src").link(pad)
        infer.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self.on_buffer)

    def on_buffer(self, _pad, info):
        self.frames += 1
        meta = info.get_buffer().get_custom_meta(SCORES_META)
        if meta is not None:
            s = meta.get_structure()
            self.results += 1
            self.instances.add(s.get_string("instance"))
            ok, size = s.get_uint("batch-size")
            if ok:
                self.batches[size] = self.batches.get(size, 0) + 1
        return Gst.PadProbeReturn.OK

    def summary(self):
        batches = ", ".join(f"{n} in batches of {size}" for size, n in sorted(self.batches.items()))
        return (f"{self.name}: {self.frames} frames, {self.results} with a result from instance "
                f"{'/'.join(sorted(i for i in self.instances if i)) or '-'} ({batches or 'none'})")


def link_chain(chain):
    """Links the elements in order; decodebin's source pad is linked when it appears."""
    for a, b in zip(chain, chain[1:]):
        if a.get_factory().get_name() == "decodebin":
            a.connect("pad-added", lambda _e, pad, sink=b: pad.link(sink.get_static_pad("sink")))
        elif not a.link(b):
            sys.exit(f"error: cannot link {a.get_name()} to {b.get_name()}")


def run(pipeline, timeout_s):
    """Plays until EOS, an error, Ctrl-C or the timeout; returns an error text or None."""
    loop, outcome = GLib.MainLoop(), {}

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, _ = msg.parse_error()
            outcome["error"] = f"{msg.src.get_name()}: {err.message}"
            loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    def on_timeout():
        outcome.setdefault("error", f"still running after {timeout_s} s")
        loop.quit()
        return False

    if timeout_s:
        GLib.timeout_add_seconds(timeout_s, on_timeout)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    pipeline.set_state(Gst.State.NULL)
    return outcome.get("error")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cameras", nargs="*", help="V4L2 devices (default /dev/video0), or files with --files")
    ap.add_argument("--files", action="store_true", help="the arguments are video files")
    ap.add_argument("--test", type=int, default=0, metavar="N", help="N test sources instead of cameras")
    ap.add_argument("--frames", type=int, default=0, help="frames per test source (0: live, until Ctrl-C)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="ONNX model (default: the dynamic-batch selfie model)")
    ap.add_argument("--provider", default="auto", help="ffnetinfer provider (auto, cpu, qnn, ...)")
    ap.add_argument("--mode", default="overlay", help="segpostproc mode (default overlay)")
    ap.add_argument("--sync", action="store_true", help="every frame waits for its own result (default async)")
    ap.add_argument("--tile", default="640x360", help="size of each stream in the grid")
    ap.add_argument("--headless", action="store_true", help="fakesink instead of the display")
    ap.add_argument("--timeout", type=int, default=0, help="stop with an error after this many seconds")
    args = ap.parse_args()
    args.tile = tuple(int(v) for v in args.tile.split("x"))
    where = [f"test {i}" for i in range(args.test)] if args.test else (args.cameras or ["/dev/video0"])
    args.cols = math.ceil(math.sqrt(len(where)))

    Gst.init(None)
    pipeline = Gst.Pipeline.new("cameras")
    grid = make("compositor", background="black")
    sink = make("fakesink") if args.headless else make("autovideosink")
    output = [grid, make("videoconvert"), sink]
    for element in output:
        pipeline.add(element)
    link_chain(output)
    cameras = [Camera(pipeline, grid, args, i, w, len(where)) for i, w in enumerate(where)]
    print(f"{len(cameras)} camera(s), one shared instance 'cams', batch-size={len(cameras)}")
    error = run(pipeline, args.timeout)
    for camera in cameras:
        print(camera.summary())
    if error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
