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
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
