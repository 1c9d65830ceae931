#!/usr/bin/env bash
# Multi-camera measurements of ffnetinfer's shared instances (docs/multicam.md); not part
# of `make test`. Uses the plugin built in this checkout (cargo build --release), not an
# installed one, and the checkout's ONNX Runtime (.venv). Prints what it measured, with
# the machine's load before each part; takes several minutes.
#
#   pipelines/bench-multicam.sh [rss|fps|live|all]   (default all)
#
# rss   peak RSS of one process with 1, 2, 4, 8 streams, shared instance vs separate sessions
# fps   aggregate frames/s of 4 non-live streams: shared+batched, shared unbatched, separate
# live  the most live 1080p30 NV12 sources one process holds at >= 29.5 fps each, 0 drops
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
what=${1:-all}
cd "$root"
[ -f target/release/libgstffnetseg.so ] || {
    echo "build the plugin first: cargo build --release -p gstffnetseg" >&2
    exit 1
}
ort=$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)
[ -n "$ort" ] || { echo "no ONNX Runtime in .venv (make venv)" >&2; exit 1; }
mkdir -p out/bench-multicam
# Only this checkout's plugin: no user-installed copy, a registry of our own.
export GST_PLUGIN_PATH_1_0=$root/target/release
export GST_PLUGIN_SYSTEM_PATH_1_0=$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/gstreamer-1.0)
export GST_REGISTRY_1_0=$root/out/bench-multicam/registry.bin
export ORT_DYLIB_PATH=$ort
selfie=$root/models/selfie_segmentation.onnx
batch=$root/models/selfie_segmentation_batch.onnx

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "plugin: $root/target/release/libgstffnetseg.so ($(git -C "$root" rev-parse --short HEAD))"

python3 - "$what" "$selfie" "$batch" <<'PY'
import os, re, subprocess, sys, time

what, selfie, batch = sys.argv[1:4]

def load():
    return open("/proc/loadavg").read().split()[:3]

def chain(i, src, infer, sink="fakesink sync=false"):
    return f"{src} ! segpreproc ! ffnetinfer name=inf{i} {infer} ! {sink}"

def run(n, src, infer, sink="fakesink sync=false", timeout=None, verbose=False):
    """One gst-launch process with n chains; returns (seconds, peak RSS MiB, output)."""
    args = ["gst-launch-1.0", "-e"] + (["-v"] if verbose else ["-q"])
    desc = "  ".join(chain(i, src, infer, sink.format(i=i)) for i in range(n))
    cmd = args + desc.split()
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if timeout:
        try:
            o, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(2)  # SIGINT: -e sends EOS, the pipeline ends cleanly
            o, _ = p.communicate(timeout=60)
        return time.monotonic() - t, None, o
    o, _ = p.communicate()
    elapsed = time.monotonic() - t
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{o[-2000:]}")
    return elapsed, None, o

def peak_rss(n, src, infer):
    args = ["gst-launch-1.0", "-q"]
    desc = "  ".join(chain(i, src, infer) for i in range(n))
    p = subprocess.Popen(args + desc.split(), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"failed: {desc}")
    return usage.ru_maxrss / 1024.0

if what in ("rss", "all"):
    print(f"\n== peak RSS (MiB), selfie, 640x480 NV12, 60 frames per stream, sync; load {load()}")
    src = "videotestsrc num-buffers=60 ! video/x-raw,format=NV12,width=640,height=480"
    print(f"{'streams':>8} {'shared, batch 1':>16} {'shared, batch N':>16} {'separate':>9}")
    for n in (1, 2, 4, 8):
        unbatched = peak_rss(n, src, f"model={selfie} shared-instance=cams")
        batched = peak_rss(n, src, f"model={batch} shared-instance=cams batch-size={n}")
        separate = peak_rss(n, src, f"model={selfie}")
        print(f"{n:>8} {unbatched:>16.0f} {batched:>16.0f} {separate:>9.0f}", flush=True)

if what in ("fps", "all"):
    frames = 150
    print(f"\n== aggregate fps, 4 streams x {frames} frames, 640x480 NV12, sync (every frame inferred), CPU; load {load()}")
    src = f"videotestsrc num-buffers={frames} ! video/x-raw,format=NV12,width=640,height=480"
    cases = [
        ("shared + batched (batch-size=4, dynamic-batch model)", f"model={batch} shared-instance=cams batch-size=4 batch-timeout=50"),
        ("shared, unbatched (batch-size=1)", f"model={selfie} shared-instance=cams"),
        ("separate sessions", f"model={selfie}"),
    ]
    base = None
    for name, infer in cases:
        elapsed, _, _ = run(4, src, infer)
        fps = 4 * frames / elapsed
        base = base or fps
        print(f"{name:<55} {fps:7.1f} fps  ({fps / base:.2f}x the first)", flush=True)

if what in ("live", "all"):
    seconds = 12
    print(f"\n== live 1080p30 NV12 sources, selfie, shared, async, {seconds} s each; per stream: average rate, min/max of the 1 s rates after the first 2 s, drops")
    src = "videotestsrc is-live=true ! video/x-raw,format=NV12,width=1920,height=1080,framerate=30/1"
    sink = "fpsdisplaysink name=fps{i} video-sink=fakesink sync=true text-overlay=false fps-update-interval=1000"
    best = 0
    for n in range(1, 17):  # stops at the first count that does not hold
        print(f"-- {n} stream(s), load {load()}", flush=True)
        _, _, out = run(n, src, f"model={selfie} shared-instance=cams mode=async", sink, timeout=seconds, verbose=True)
        rates = {}
        drops = {}
        average = {}
        pattern = r"GstFPSDisplaySink:fps(\d+): last-message = rendered: (\d+), dropped: (\d+), current: ([\d.]+), average: ([\d.]+)"
        for m in re.finditer(pattern, out):
            i = int(m[1])
            rates.setdefault(i, []).append(float(m[4]))
            drops[i] = int(m[3])
            average[i] = float(m[5])
        ok = len(rates) == n
        for i in range(n):
            r = rates.get(i, [])[2:] or rates.get(i, [])
            if not r:
                print(f"   stream {i}: no measurements")
                ok = False
                continue
            # 1 s windows of a 30 fps stream hold 29 to 31 frames by where they fall:
            # the criterion is the whole run's average; min/max show how even it was.
            avg = average.get(i, 0.0)
            print(f"   stream {i}: average {avg:6.2f} fps, 1 s rates min {min(r):6.2f} max {max(r):6.2f}, dropped {drops.get(i, '?')}")
            ok = ok and avg >= 29.5 and drops.get(i, 1) == 0
        if not ok:
            break
        best = n
    print(f"most live 1080p30 sources held at >= 29.5 fps each with 0 drops: {best}")
PY
