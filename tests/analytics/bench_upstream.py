#!/usr/bin/env python3
"""Upstream GStreamer's onnxinference vs segpreproc ! ffnetinfer, same frames, same model,
inside the Debian 13 root (GStreamer 1.26; run by pipelines/bench.sh through
tests/analytics/in-root.sh when the root exists).

    bench_upstream.py MEDIA MODEL [--frames N] [--runs R] [--json OUT]

The frames: MEDIA decoded once and scaled to 1920x1080 NV12 into a raw file; every run reads
that file (filesrc ! rawvideoparse), so both routes see the same bytes and no decoder:

  upstream: videoconvert ! videoscale ! 256x256 RGB ! onnxinference ! segpostproc (256x256 frames)
  ffnetseg: segpreproc ! ffnetinfer ! segpostproc (1080p frames)

both `segpostproc mode=overlay`, into fakesink; and, to read the difference, ffnetseg with
`ffnetinfer spin=true` and upstream's videoconvert ! videoscale alone. onnxinference has no thread setting: its ONNX
Runtime session uses the library's default intra-op thread count (the physical cores), so
ffnetinfer runs with threads=0, which leaves the same default. Each route runs R times,
alternating; the table gives the median run's fps and CPU time (user + system of the
gst-launch-1.0 process) per frame, and a read-only run (filesrc ! rawvideoparse ! fakesink)
as the floor both include. The model copy with a tensor id in its metadata is the one
upstream_tensor.py writes (onnxinference 1.26 needs it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream_tensor import TENSOR_ID, with_metadata  # noqa: E402

W, H = 1920, 1080


def gst(args):
    # stderr into a file, not a pipe: Debian's ONNX Runtime prints pages of schema
    # warnings when it loads, enough to fill a pipe nobody reads until the end.
    with tempfile.TemporaryFile() as log:
        t0 = time.monotonic()
        p = subprocess.Popen(["gst-launch-1.0", "-q"] + args, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        log.seek(0)
        err = log.read().decode(errors="replace")
    if status != 0:
        sys.exit(f"FAIL: gst-launch-1.0 {' '.join(args)}\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def onnxruntime_versions():
    # The installed (ii) runtime package; dpkg-query also lists known, absent versions.
    deb = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package} ${Version}\\n",
                          "libonnxruntime*"], capture_output=True, text=True).stdout.split("\n")
    deb = next((line[3:] for line in deb if line.startswith("ii") and "-dev" not in line),
               "libonnxruntime ?")
    venv = os.environ.get("ORT_DYLIB_PATH", "")
    return f"Debian {deb.strip()}", (os.path.basename(venv) + " (the venv's wheel)") if venv else "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("media")
    ap.add_argument("model")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    work = os.path.join(os.path.dirname(os.path.abspath(a.media)), "upstream")
    os.makedirs(work, exist_ok=True)
    raw = os.path.join(work, f"frames_{W}x{H}_nv12_{a.frames}.raw")
    if not os.path.exists(raw) or os.path.getsize(raw) != W * H * 3 // 2 * a.frames:
        gst(["filesrc", f"location={a.media}", "!", "decodebin", "!", "videoconvert", "!", "videoscale", "!",
             f"video/x-raw,format=NV12,width={W},height={H}", "!", "identity", f"eos-after={a.frames + 1}", "!",
             "filesink", f"location={raw}"])
    model_with_id = os.path.join(work, "selfie_segmentation_with_tensor_id.onnx")
    with_metadata(a.model, model_with_id, "mask", TENSOR_ID)
    source = ["filesrc", f"location={raw}", f"blocksize={W * H * 3 // 2}", "!", "rawvideoparse",
              "format=nv12", f"width={W}", f"height={H}", "framerate=30/1", "!"]
    routes = {
        "read only (floor)": source + ["fakesink"],
        "upstream: videoconvert ! videoscale ! onnxinference ! segpostproc": source + [
            "videoconvert", "!", "videoscale", "!", "video/x-raw,format=RGB,width=256,height=256", "!",
            "onnxinference", "input-image-format=hwc", "input-tensor-scale=255", f"model-file={model_with_id}", "!",
            "segpostproc", f"tensor-id={TENSOR_ID}", "mode=overlay", "!", "fakesink"],
        "ffnetseg: segpreproc ! ffnetinfer ! segpostproc": source + [
            "segpreproc", "!", "ffnetinfer", f"model={a.model}", "threads=0", "!",
            "segpostproc", "mode=overlay", "!", "fakesink"],
        # ONNX Runtime's own default lets idle intra-op threads spin (onnxinference keeps
        # it); ffnetinfer turns spinning off unless spin=true.
        "ffnetseg, ffnetinfer spin=true": source + [
            "segpreproc", "!", "ffnetinfer", f"model={a.model}", "threads=0", "spin=true", "!",
            "segpostproc", "mode=overlay", "!", "fakesink"],
        "upstream's conversion alone: videoconvert ! videoscale (no inference)": source + [
            "videoconvert", "!", "videoscale", "!", "video/x-raw,format=RGB,width=256,height=256", "!",
            "fakesink"],
    }
    results = {name: [] for name in routes}
    for _ in range(a.runs):
        for name, args in routes.items():
            results[name].append(gst(args))
    deb_ort, venv_ort = onnxruntime_versions()
    rows = []
    for name, runs in results.items():
        wall, cpu = sorted(runs)[len(runs) // 2]
        rows.append({"route": name, "fps": a.frames / wall, "cpu_ms_per_frame": 1000 * cpu / a.frames,
                     "wall_s": [round(w, 3) for w, _ in runs]})
    up, ours = rows[1], rows[2]
    ort = {rows[0]["route"]: "none", up["route"]: deb_ort, ours["route"]: venv_ort,
           rows[3]["route"]: venv_ort, rows[4]["route"]: "none"}
    print(f"### Upstream onnxinference vs segpreproc ! ffnetinfer (Debian 13 root, GStreamer "
          f"{subprocess.run(['pkg-config', '--modversion', 'gstreamer-1.0'], capture_output=True, text=True).stdout.strip()})\n")
    print(f"{a.frames} frames of vtest.avi scaled to {W}×{H} NV12 (read from a raw file), "
          f"{os.path.basename(a.model)}, ONNX Runtime's default intra-op threads in both, "
          f"median of {a.runs} runs; {os.cpu_count()} CPUs.\n")
    print("| route | ONNX Runtime | fps | CPU ms/frame |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['route']} | {ort[r['route']]} | {r['fps']:.1f} | {r['cpu_ms_per_frame']:.1f} |")
    print(f"\nffnetseg / upstream: {ours['fps'] / up['fps']:.2f}× the fps, "
          f"{ours['cpu_ms_per_frame'] / up['cpu_ms_per_frame']:.2f}× the CPU time per frame. "
          "The upstream route's segpostproc works on the 256×256 frame onnxinference passes on, "
          "ffnetseg's on the 1080p frame (the overlay is drawn at full size). The two routes "
          "load different ONNX Runtime builds (ffnetinfer needs ONNX Runtime API 22, newer "
          "than Debian 13's), so the inference itself is not the same code.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "onnxruntime": ort}, f, indent=1)


if __name__ == "__main__":
    main()
