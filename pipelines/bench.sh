#!/usr/bin/env bash
# make bench: runs every benchmark in one go and writes BENCHMARKS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
out=$root/out/bench
mkdir -p "$out"
video=/usr/share/doc/opencv-doc/examples/data/vtest.avi
py=$root/.venv/bin/python
cd "$root"
echo "== Rust stage, element, end-to-end and live benchmarks"
target/release/ffnetseg-bench all | tee "$out/rust.jsonl"
echo "== GPU (OpenCL) route vs CPU route of segpreproc and segpostproc"
# OpenCV takes only GPU OpenCL devices by default; without one, the route is measured on
# PoCL's CPU device (the test-only opt-in), which shows its overhead, not a GPU's speed.
if ! target/release/ffnetseg-bench gpu > "$out/gpu.jsonl"; then
  OPENCV_OPENCL_DEVICE=:CPU: FFNETSEG_OPENCL_ALLOW_CPU=1 target/release/ffnetseg-bench gpu > "$out/gpu.jsonl" || : > "$out/gpu.jsonl"
fi
cat "$out/gpu.jsonl"
echo "== Python OpenCV + onnxruntime peer"
"$py" tests/bench/peer_opencv_ort.py --video "$video" --model models/selfie_segmentation.onnx --frames 120 --threads 2 | tee "$out/peer_native.json"
"$py" tests/bench/peer_opencv_ort.py --video "$video" --model models/selfie_segmentation.onnx --frames 120 --threads 2 --width 1920 --height 1080 | tee "$out/peer_1080p.json"
echo "== Peak memory of the 1080p pipeline"
"$py" - "$root/models/selfie_segmentation.onnx" > "$out/rss.json" <<'PY'
import json, os, subprocess, sys
cmd = ["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=300", "!",
       "video/x-raw,format=NV12,width=1920,height=1080", "!", "segpreproc", "!",
       "ffnetinfer", f"model={sys.argv[1]}", "threads=2", "!", "segpostproc", "mode=overlay", "!", "fakesink"]
p = subprocess.Popen(cmd)
_, status, usage = os.wait4(p.pid, 0)
assert status == 0, f"pipeline failed: {status}"
print(json.dumps({"max_rss_mb": usage.ru_maxrss / 1024.0}))
PY
cat "$out/rss.json"
"$py" tests/bench/report.py "$out/rust.jsonl" "$out/peer_native.json" "$out/peer_1080p.json" "$out/rss.json" BENCHMARKS.md "$out/gpu.jsonl"
# Upstream GStreamer's onnxinference as the peer, where the Debian 13 root of
# make analytics-check exists (GStreamer 1.26; chroot needs root): appended to BENCHMARKS.md.
T=${CARGO_TARGET_DIR:-$root/target}
if [ -x "$T/analytics/root/usr/bin/gst-inspect-1.0" ] && [ "$(id -u)" = 0 ]; then
  echo "== onnxinference vs segpreproc ! ffnetinfer (Debian 13 root)"
  mkdir -p "$T/analytics/media" && cp "$video" "$T/analytics/media/vtest.avi"
  tests/analytics/in-root.sh "cargo build --release -p gstffnetseg --features analytics 2>&1 | tail -1 &&
    GST_PLUGIN_PATH=$T/analytics/cargo/release GST_REGISTRY_1_0=$T/analytics/registry.bin \
    python3 tests/analytics/bench_upstream.py $T/analytics/media/vtest.avi models/selfie_segmentation.onnx \
      --frames 60 --runs 3 --json $T/analytics/bench_upstream.json" | tee "$out/upstream.md"
  { echo; sed -n '/^### /,$p' "$out/upstream.md"; } >> BENCHMARKS.md
else
  echo "== onnxinference peer skipped: no Debian 13 root (sudo make analytics-check makes it)"
fi
# Many cameras: shared instances vs separate sessions (memory, throughput, live sources, QNN
# simulator batch), the selfie model and, where make models made it, FFNet-78S-LowRes W8A8.
echo "== Many cameras, one model (pipelines/bench-multicam.sh)"
pipelines/bench-multicam.sh all --markdown "$out/multicam.md"
cat "$out/multicam.md" >> BENCHMARKS.md
