#!/usr/bin/env bash
# Virtual background for video calls: blurs everything but the person (segpostproc
# mode=background-blur) or puts a picture behind them (--picture: mode=background-replace),
# from a V4L2 camera or a file, to the display or an MP4 file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
device=/dev/video0; input=""; output=""; width=1280; height=720
model=$here/../models/selfie_segmentation.onnx
strength=41; edge=9; smoothing=0.6; threshold=0.55; provider=auto; frames=-1; check=0; picture=
usage() {
  cat <<USAGE
Usage: $0 [--device /dev/videoN | --input FILE] [--output FILE.mp4] [--size WxH]
          [--strength N] [--edge N] [--smoothing A] [--threshold T] [--model MODEL.onnx]
          [--picture FILE] [--provider P] [--frames N] [--check]
  --device      camera (default $device), at --size (default ${width}x${height})
  --input       a video or image file instead of the camera
  --output      write an MP4 instead of showing the video
  --strength N  background blur kernel (segpostproc background-blur, default $strength)
  --picture F   replace the background with this picture instead of blurring it
  --edge N      odd box blur of the person's mask, soft edges (segpostproc blur, default $edge; 1 = hard)
  --smoothing A temporal smoothing of the mask (1 = off, default $smoothing): less flicker
  --threshold T person where the probability is above T (default $threshold)
  --model       person segmentation model (default models/selfie_segmentation.onnx)
  --provider    ffnetinfer provider (default auto)
  --frames N    stop after N frames
  --check       vtest.avi, 30 frames, into fakesink (used by make test)
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --picture) picture=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --input) input=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --size) width=${2%x*}; height=${2#*x}; shift 2 ;;
    --strength) strength=$2; shift 2 ;;
    --edge) edge=$2; shift 2 ;;
    --smoothing) smoothing=$2; shift 2 ;;
    --threshold) threshold=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --provider) provider=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$check" = 1 ]; then
  input=/usr/share/doc/opencv-doc/examples/data/vtest.avi; frames=30; output=""
fi
# Arrays, not strings: gst-launch-1.0 escapes each argument itself, so file names with
# spaces stay one property value.
if [ -n "$input" ]; then
  src=(filesrc location="$input" ! decodebin)
else
  src=(v4l2src device="$device" ! "video/x-raw,width=$width,height=$height")
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
if [ -n "$picture" ]; then
  background=(mode=background-replace background="$picture")
else
  background=(mode=background-blur background-blur="$strength")
fi
# -e: Ctrl-C ends the stream cleanly, so an MP4 being written is finished properly.
exec gst-launch-1.0 -q -e "${src[@]}" "${limit[@]}" ! videoconvert ! \
  segpreproc ! ffnetinfer model="$model" provider="$provider" ! \
  segpostproc "${background[@]}" blur="$edge" smoothing="$smoothing" \
  threshold="$threshold" ! videoconvert ! "${sink[@]}"
