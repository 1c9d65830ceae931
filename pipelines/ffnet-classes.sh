#!/usr/bin/env bash
# Multi-class segmentation overlay (segpostproc mode=classes): every pixel painted with the
# Cityscapes colour of its top class. Made for FFNet as Qualcomm AI Hub exports it (19
# Cityscapes classes, e.g. ffnet_40s or ffnet_78s_lowres). The default model,
# models/test_ffnet_tiny.onnx, has the FFNet contract but is UNTRAINED: its classes are
# meaningless, it only shows the path works; pass a real FFNet with --model.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
input=/usr/share/doc/opencv-doc/examples/data/vtest.avi; device=""; output=""
width=1280; height=720
model=$here/../models/test_ffnet_tiny.onnx
opacity=0.5; provider=auto; frames=-1; check=0; post=""
usage() {
  cat <<USAGE
Usage: $0 [--input FILE | --device /dev/videoN] [--output FILE.mp4] [--model FFNET.onnx]
          [--opacity O] [--provider P] [--post "PROPS"] [--frames N] [--check]
  --input     video or image (default $input)
  --device    a V4L2 camera instead of a file (at --size, default ${width}x${height})
  --output    write an MP4 instead of showing the video
  --model     multi-class model, 1×C×H×W logits (default models/test_ffnet_tiny.onnx, untrained)
  --opacity   class colour opacity (default $opacity)
  --provider  ffnetinfer provider (default auto; qnn on a Snapdragon board)
  --post      extra segpostproc properties, e.g. "smoothing=1"
  --frames N  stop after N frames
  --check     vtest.avi, 20 frames, into fakesink (used by make test)
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --input) input=$2; device=""; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --size) width=${2%x*}; height=${2#*x}; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --opacity) opacity=$2; shift 2 ;;
    --provider) provider=$2; shift 2 ;;
    --post) post=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$check" = 1 ]; then
  device=""; input=/usr/share/doc/opencv-doc/examples/data/vtest.avi; frames=20; output=""
fi
if [ -n "$device" ]; then
  src=(v4l2src device="$device" ! "video/x-raw,width=$width,height=$height")
else
  src=(filesrc location="$input" ! decodebin)
fi
limit=()
[ "$frames" -gt 0 ] && limit=(! identity eos-after="$frames")
if [ "$check" = 1 ]; then
  sink=(fakesink)
elif [ -n "$output" ]; then
  mkdir -p "$(dirname "$output")"
  sink=(x264enc speed-preset=veryfast tune=zerolatency ! mp4mux ! filesink location="$output")
else
  sink=(autovideosink)
fi
read -r -a extra <<<"$post"
exec gst-launch-1.0 -q -e "${src[@]}" "${limit[@]}" ! videoconvert ! \
  segpreproc ! ffnetinfer model="$model" provider="$provider" ! \
  segpostproc mode=classes opacity="$opacity" "${extra[@]}" ! videoconvert ! "${sink[@]}"
