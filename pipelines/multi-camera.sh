#!/usr/bin/env bash
# Several cameras, one model (docs/multicam.md): N sources, each through
#   segpreproc ! ffnetinfer shared-instance=cams batch-size=N ! segpostproc
# (one model session and one batched inference for all of them), tiled by compositor into
# one grid, shown on the display or written to an MP4.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../models/selfie_segmentation_batch.onnx
provider=auto; mode=overlay; infer_mode=async; tile=640x360; output=""; cache=""
batch=""; timeout=10; sources=(); kind=device; check=0; frames=0
usage() {
  cat <<USAGE
Usage: $0 [SOURCE...] [--files] [--test N] [--tile WxH] [--model MODEL.onnx] [--provider P]
          [--batch-size N] [--batch-timeout MS] [--sync] [--mode MODE] [--context-cache DIR]
          [--output FILE.mp4] [--check]
  SOURCE      a V4L2 camera (/dev/video0 /dev/video2 ...; default /dev/video0), or with
              --files a video file per stream
  --test N    N test sources (videotestsrc patterns) instead of cameras
  --tile WxH  size of each stream in the grid (default $tile); the grid is about square
  --model     default models/selfie_segmentation_batch.onnx (symbolic batch: one inference
              per round); a batch-1 model runs the streams one after another
  --batch-size N   frames per inference (default: the number of sources)
  --batch-timeout MS  how long a batch waits for late streams (default $timeout)
  --sync      ffnetinfer mode=sync: every frame waits for its own result (default async:
              frames never wait, each carries its stream's newest result)
  --mode      segpostproc mode: overlay | background-blur | mask | classes (default overlay)
  --provider  auto | cpu | qnn | cuda | ... (default auto); --context-cache DIR for QNN
  --output FILE.mp4   H.264 MP4 instead of the display
  --check     4 test sources of 30 frames into a temporary MP4 whose size and frame count
              are checked (used by make test)
Example, a 4-camera board: $0 /dev/video0 /dev/video2 /dev/video4 /dev/video6 --provider qnn
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --files) kind=file; shift ;;
    --test) kind=test; count=$2; shift 2 ;;
    --tile) tile=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --provider) provider=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --batch-timeout) timeout=$2; shift 2 ;;
    --sync) infer_mode=sync; shift ;;
    --mode) mode=$2; shift 2 ;;
    --context-cache) cache="context-cache=$2"; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --check) check=1; kind=test; count=4; frames=30; tile=320x180; infer_mode=sync
             output=$(mktemp --suffix=.mp4); shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) sources+=("$1"); shift ;;
  esac
done
[ "$kind" = test ] && sources=($(seq 1 "$count"))
[ ${#sources[@]} -gt 0 ] || sources=(/dev/video0)
n=${#sources[@]}
batch=${batch:-$n}
tw=${tile%x*}; th=${tile#*x}
cols=1; while [ $((cols * cols)) -lt "$n" ]; do cols=$((cols + 1)); done
rows=$(((n + cols - 1) / cols))
patterns=(ball smpte snow pinwheel spokes gradient circular checkers-8)

# One camera's source, as WxH raw video.
source_of() {
  local i=$1 s=$2 limit=""
  [ "$frames" -gt 0 ] && limit="num-buffers=$frames"
  case "$kind" in
    test) echo "videotestsrc $limit pattern=${patterns[$((i % ${#patterns[@]}))]} is-live=$((1 - check))" ;;
    file) echo "filesrc location=\"$s\" ! decodebin" ;;
    *) echo "v4l2src device=$s" ;;
  esac
}

desc="compositor name=grid background=black"
for i in $(seq 0 $((n - 1))); do
  desc+=" sink_$i::xpos=$(((i % cols) * tw)) sink_$i::ypos=$(((i / cols) * th))"
done
if [ -n "$output" ]; then
  mkdir -p "$(dirname "$output")"
  desc+=" ! videoconvert ! x264enc speed-preset=veryfast tune=zerolatency ! mp4mux ! filesink location=\"$output\""
else
  desc+=" ! videoconvert ! autovideosink"
fi
for i in $(seq 0 $((n - 1))); do
  desc+="  $(source_of "$i" "${sources[$i]}") ! videoconvert ! videoscale ! video/x-raw,width=$tw,height=$th,pixel-aspect-ratio=1/1 ! \
    segpreproc ! ffnetinfer model=\"$model\" provider=$provider shared-instance=cams batch-size=$batch \
    batch-timeout=$timeout mode=$infer_mode $cache ! segpostproc mode=$mode ! videoconvert ! queue ! grid.sink_$i"
done
echo "$n stream(s), one shared instance (batch-size=$batch, mode=$infer_mode), grid ${cols}x${rows} of ${tw}x${th}"
eval gst-launch-1.0 -e -q "$desc"
[ "$check" = 1 ] || exit 0

# The check: one MP4 of the whole grid with every frame of the sources.
python3 - "$output" "$((cols * tw))" "$((rows * th))" "$frames" <<'PY'
import struct, sys
path, width, height, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = open(path, "rb").read()
i = data.find(b"stsz")
count = struct.unpack(">I", data[i + 12:i + 16])[0] if i > 0 else 0
t = data.find(b"tkhd")  # track header: width and height are 16.16 fixed point at its end
w, h = (struct.unpack(">II", data[t + 80:t + 88]) if t > 0 else (0, 0))
got = (w >> 16, h >> 16)
print(f"{path}: {count} frames of {got[0]}x{got[1]}")
if got != (width, height) or count < frames:
    sys.exit(f"expected at least {frames} frames of {width}x{height}")
PY
rm -f "$output"
