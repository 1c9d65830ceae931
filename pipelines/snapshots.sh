#!/usr/bin/env bash
# snapshots.sh MEDIA OUT_PREFIX FRAME: writes OUT_PREFIX.png = original | overlay | mask
# of frame FRAME (0 for an image), plus background blur as OUT_PREFIX_blur.png.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
media=$1; prefix=$2; frame=$3
model=$here/../models/selfie_segmentation.onnx
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dec="filesrc location=$media ! decodebin ! videoconvert ! video/x-raw,format=RGB"
# identity eos-after stops a video after FRAME; a still image has one frame anyway.
pick="identity"
[ "$frame" -gt 0 ] && pick="identity eos-after=$((frame + 2))"
# Every frame up to FRAME runs through the elements so smoothing is what a viewer sees.
for mode in overlay mask background-blur; do
  gst-launch-1.0 -q $dec ! $pick ! segpreproc ! ffnetinfer model="$model" ! \
    segpostproc mode=$mode smoothing=0.5 blur=5 ! videoconvert ! video/x-raw,format=RGB ! \
    pngenc ! multifilesink location="$tmp/$mode-%05d.png"
done
gst-launch-1.0 -q $dec ! $pick ! pngenc ! multifilesink location="$tmp/original-%05d.png"
n=$(printf '%05d' "$frame")
"$here/../.venv/bin/python" - "$tmp" "$n" "$prefix" <<'PY'
import sys, cv2, numpy as np
tmp, n, prefix = sys.argv[1:]
imgs = [cv2.imread(f"{tmp}/{m}-{n}.png") for m in ("original", "overlay", "mask")]
for img, label in zip(imgs, ("original", "overlay", "mask")):
    cv2.putText(img, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 3, cv2.LINE_AA)
    cv2.putText(img, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 1, cv2.LINE_AA)
cv2.imwrite(f"{prefix}.png", np.hstack(imgs))
cv2.imwrite(f"{prefix}_blur.png", cv2.imread(f"{tmp}/background-blur-{n}.png"))
print(f"{prefix}.png, {prefix}_blur.png")
PY
