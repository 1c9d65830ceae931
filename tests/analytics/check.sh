#!/usr/bin/env bash
# make analytics-check: the plugin with the `analytics` feature on GStreamer 1.26, in a
# Debian 13 root (tests/analytics/make-root.sh), read back through GStreamer's own API.
#
# 1. makes or updates the root; 2. builds the plugin there with --features analytics;
# 3. tests/analytics/read_analytics.py (Python GI, GstAnalytics) on vtest.avi with the
#    19-class test FFNet and with the selfie model: the GstTensorMeta of ffnetinfer and the
#    GstAnalyticsSegmentationMtd + classification of segpostproc against the plugin's own
#    outputs (mode=labels frames, FfnetsegScoresMeta);
# 4. upstream onnxinference feeding segpostproc through GstTensorMeta
#    (tests/analytics/upstream_tensor.py);
# 5. segmentationoverlay (GStreamer 1.28) drawing our masks, where the root's GStreamer has it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
T=${CARGO_TARGET_DIR:-$repo/target}
media=/usr/share/doc/opencv-doc/examples/data/vtest.avi
frames=${FRAMES:-12}
"$here/make-root.sh"
mkdir -p "$T/analytics/media"
cp "$media" "$T/analytics/media/vtest.avi"
in_root() { "$here/in-root.sh" "$@"; }
echo "== cargo build --release -p gstffnetseg --features analytics (inside the root)"
in_root 'cargo build --release -p gstffnetseg --features analytics 2>&1 | tail -1'
echo "== the safe wrapper's unit tests (cargo test --features analytics, inside the root)"
in_root 'cargo test --release -p gstffnetseg --features analytics --lib analytics 2>&1 | grep -E "^test |test result"'
plugin_env="GST_PLUGIN_PATH=$T/analytics/cargo/release GST_REGISTRY_1_0=$T/analytics/registry.bin"
in_root "$plugin_env gst-inspect-1.0 ffnetseg | grep -E '^  (Version|Filename)'; gst-inspect-1.0 --version | grep -m1 GStreamer"
echo "== the standard metadata read back with Python GI (GstAnalytics), $frames frames each"
in_root "$plugin_env python3 tests/analytics/read_analytics.py $T/analytics/media/vtest.avi models/test_ffnet_tiny.onnx --names cityscapes --output-id mask --frames $frames"
in_root "$plugin_env python3 tests/analytics/read_analytics.py $T/analytics/media/vtest.avi models/selfie_segmentation.onnx --names selfie --output-id mask --frames $frames"
# 638 wide: GRAY8 rows padded to 640 bytes (the mtd mask has none).
in_root "$plugin_env python3 tests/analytics/read_analytics.py $T/analytics/media/vtest.avi models/selfie_segmentation.onnx --names selfie --output-id mask --frames $frames --size 638x359"
echo "== the C reading example (docs/analytics.md) on 4 frames"
in_root "cc -o $T/analytics/read_analytics_c tests/analytics/read_analytics.c \$(pkg-config --cflags --libs gstreamer-analytics-1.0 gstreamer-video-1.0) &&
  $plugin_env $T/analytics/read_analytics_c 'filesrc location=$T/analytics/media/vtest.avi ! decodebin ! videoconvert ! identity eos-after=5 ! segpreproc ! ffnetinfer model=models/test_ffnet_tiny.onnx ! segpostproc ! fakesink name=sink' 2>&1 | grep -v -e 'Schema error' -e '^\$' | tail -3"
if [ -f "$here/upstream_tensor.py" ]; then
  echo "== upstream onnxinference ! segpostproc (scores from GstTensorMeta)"
  # Debian's ONNX Runtime prints pages of "Schema error" lines when it loads: filtered out.
  in_root "set -o pipefail; $plugin_env python3 tests/analytics/upstream_tensor.py $T/analytics/media/vtest.avi models/selfie_segmentation.onnx --frames $frames 2>&1 | grep -v -e '^Schema error' -e '^\$'"
fi
echo "== segmentationoverlay"
if in_root 'gst-inspect-1.0 segmentationoverlay >/dev/null 2>&1'; then
  in_root "$plugin_env gst-launch-1.0 -q filesrc location=$T/analytics/media/vtest.avi ! decodebin ! videoconvert ! segpreproc ! ffnetinfer model=models/test_ffnet_tiny.onnx ! segpostproc mode=overlay opacity=0 ! segmentationoverlay ! videoconvert ! pngenc snapshot=true ! filesink location=$T/analytics/segmentationoverlay.png" &&
    echo "   drew our masks: $T/analytics/segmentationoverlay.png"
else
  echo "   not in this GStreamer ($(in_root 'pkg-config --modversion gstreamer-1.0')): segmentationoverlay came with 1.28; skipped"
fi
echo "PASS: make analytics-check"
