#!/usr/bin/env bash
# USB camera (V4L2) → segmentation overlay → display.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
device=/dev/video0; width=1280; height=720; mode=overlay; provider=auto
model=$here/../models/selfie_segmentation.onnx
check=0
usage() {
  cat <<USAGE
Usage: $0 [--device /dev/videoN] [--size WxH] [--model MODEL.onnx] [--mode MODE] [--provider P]
  MODE: overlay | background-blur | mask | classes; P: auto | cpu | qnn | cuda | ...
  --check   use videotestsrc and fakesink instead of camera and display (used by make test)
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --size) width=${2%x*}; height=${2#*x}; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --provider) provider=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$check" = 1 ]; then
  src="videotestsrc num-buffers=30 pattern=ball"; sink="fakesink"
else
  src="v4l2src device=$device"; sink="autovideosink"
fi
exec gst-launch-1.0 -q $src ! video/x-raw,width=$width,height=$height ! videoconvert ! \
  segpreproc ! ffnetinfer model="$model" provider=$provider ! segpostproc mode=$mode ! \
  videoconvert ! $sink
