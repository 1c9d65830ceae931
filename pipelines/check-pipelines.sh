#!/usr/bin/env bash
# Runs every ready pipeline in its check mode (files or test sources in place of cameras
# and displays), so none of them rots. Called by `make test`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pass=0; fail=0
run() {
  local name=$1; shift
  if out=$("$@" 2>&1); then
    echo "ok   $name"; pass=$((pass + 1))
  else
    echo "FAIL $name"; echo "$out" | tail -20; fail=$((fail + 1))
  fi
}
run "file-to-mp4 overlay" "$here/file-to-mp4.sh" --check
run "file-to-mp4 background-blur" "$here/file-to-mp4.sh" --check --mode background-blur
run "file-to-mp4 FFNet classes" "$here/file-to-mp4.sh" --check --mode classes --model "$here/../models/test_ffnet_tiny.onnx"
run "camera-to-display" "$here/camera-to-display.sh" --check
# The README's pipeline, exactly as a user types it, with fakesink for the display.
run "README pipeline (installed plugin, no environment variables)" env -u ORT_DYLIB_PATH -u GST_PLUGIN_PATH \
  gst-launch-1.0 -q filesrc location=/usr/share/doc/opencv-doc/examples/data/vtest.avi ! decodebin ! \
  identity eos-after=10 ! videoconvert ! segpreproc ! ffnetinfer model="$here/../models/selfie_segmentation.onnx" ! \
  segpostproc mode=overlay ! fakesink
run "snapdragon-camera (videotestsrc, provider=cpu, fakesink)" "$here/snapdragon-camera.sh" --check
run "virtual-background (blur)" "$here/virtual-background.sh" --check
run "virtual-background (picture)" "$here/virtual-background.sh" --check --picture /usr/share/doc/opencv-doc/examples/data/fruits.jpg
run "ffnet-classes (tiny FFNet)" "$here/ffnet-classes.sh" --check
run "udp-stream (RTP/H.264 over 127.0.0.1)" "$here/udp-stream.sh" --check
run "multi-camera (4 test sources, one shared batched instance, compositor grid)" "$here/multi-camera.sh" --check
run "embedding examples (Rust, Python)" "$here/check-examples.sh"
if command -v meson >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1; then
  run "meson setup/compile/install into a temporary prefix" "$here/check-meson.sh"
else
  echo "skip meson build check: meson and ninja are not installed (apt-get install meson ninja-build)"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
