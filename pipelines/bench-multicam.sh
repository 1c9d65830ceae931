#!/usr/bin/env bash
# Multi-camera measurements of ffnetinfer's shared instances (docs/multicam.md); `make bench`
# runs it and appends its section to BENCHMARKS.md. Uses the plugin built in this checkout
# (cargo build --release), not an installed one, and the checkout's ONNX Runtime (.venv).
# Prints what it measured, with the machine's load before each part; takes several minutes.
#
#   pipelines/bench-multicam.sh [rss|fps|live|qnn|all] [--markdown FILE] [--ffnet-dir DIR]
#
# rss   peak RSS of one process with 1, 2, 4, 8 streams, shared instance vs separate sessions
# fps   aggregate frames/s of 4 non-live streams: shared+batched, shared unbatched, separate
# live  the most live 1080p30 NV12 sources one process holds at >= 29.5 fps each, 0 drops
# qnn   batch 4 vs 4 x batch 1 on the QNN HTP simulator
# The selfie model always; FFNet-78S-LowRes W8A8 where `make models` made it (out/models).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
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
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "plugin: $root/target/release/libgstffnetseg.so ($(git -C "$root" rev-parse --short HEAD))"
exec python3 "$root/tests/bench/multicam.py" "$@"
