#!/usr/bin/env bash
# Segments a video file into an MP4 (overlay by default) and prints frames per second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
input=/usr/share/doc/opencv-doc/examples/data/vtest.avi
output=out/segmented.mp4
model=$here/../models/selfie_segmentation.onnx
mode=overlay
extra=""
usage() {
  cat <<USAGE
Usage: $0 [--input FILE] [--output FILE.mp4] [--model MODEL.onnx] [--mode MODE] [--post "PROPS"]
  MODE: overlay | background-blur | classes   (segpostproc mode; default overlay)
  --post "smoothing=0.5 blur=5 color=#ff0000"  extra segpostproc properties
  --check   run on the first 30 frames into a temporary file (used by make test)
Defaults: --input $input --output $output --model models/selfie_segmentation.onnx
USAGE
}
frames=-1
while [ $# -gt 0 ]; do
  case "$1" in
    --input) input=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --post) extra=$2; shift 2 ;;
    --check) frames=30; output=$(mktemp --suffix=.mp4); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
mkdir -p "$(dirname "$output")"
limit=""
[ "$frames" -gt 0 ] && limit="! identity eos-after=$frames"
start=$(date +%s.%N)
# shellcheck disable=SC2086
gst-launch-1.0 -q filesrc location="$input" ! decodebin $limit ! videoconvert ! \
  segpreproc ! ffnetinfer model="$model" ! segpostproc mode="$mode" $extra ! \
  videoconvert ! x264enc speed-preset=veryfast tune=zerolatency ! mp4mux ! filesink location="$output"
end=$(date +%s.%N)
# Frames written = sample count of the MP4's video track (its stsz box).
python3 - "$start" "$end" "$output" <<'PY'
import struct, sys
start, end, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
data = open(out, "rb").read()
i = data.find(b"stsz")
count = struct.unpack(">I", data[i + 12:i + 16])[0] if i > 0 else 0
secs = end - start
print(f"{out}: {count} frames in {secs:.1f} s = {count / secs:.1f} frames per second "
      "(the whole job: decode, segment, H.264 encode)")
PY
[ "$frames" -gt 0 ] && rm -f "$output"
exit 0
