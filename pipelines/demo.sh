#!/usr/bin/env bash
# The main job: vtest.avi (a street with pedestrians) segmented with the MediaPipe selfie
# model into out/demo/vtest_overlay.mp4, plus snapshots original | overlay | mask.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
out=$root/out/demo
video=/usr/share/doc/opencv-doc/examples/data/vtest.avi
image=/usr/share/doc/opencv-doc/examples/data/messi5.jpg
model=$root/models/selfie_segmentation.onnx
mkdir -p "$out"
echo "== Segmenting $video"
"$here/file-to-mp4.sh" --input "$video" --output "$out/vtest_overlay.mp4" --model "$model" --post "smoothing=0.5 blur=5"

echo "== Snapshots (original | overlay | mask)"
"$here/snapshots.sh" "$video" "$out/vtest" 200
"$here/snapshots.sh" "$image" "$out/messi5" 0
ls -1 "$out"
