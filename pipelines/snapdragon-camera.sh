#!/usr/bin/env bash
# Snapdragon board (RB3 Gen2 / QCS6490, QCS8550, …): the Qualcomm camera (qtiqmmfsrc) →
# segmentation on the NPU (ONNX Runtime's QNN execution provider, HTP backend) → Wayland
# display (Weston). Untested on hardware so far: --check runs the same elements here with
# videotestsrc, provider=cpu and fakesink.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
camera=0; width=1280; height=720; fps=30; mode=overlay; provider=qnn; provider_options=""
model=$here/../models/selfie_segmentation.onnx
sink="waylandsink fullscreen=true sync=false"
post=""; src_caps=""; after_src=""; check=0
usage() {
  cat <<USAGE
Usage: $0 [--camera N] [--size WxH] [--fps N] [--model MODEL.onnx] [--mode MODE]
          [--provider P] [--provider-options "k=v,..."] [--post "PROPS"] [--sink "SINK"]
          [--src-caps CAPS] [--after-src "ELEMENTS"] [--check]
  --camera N     qtiqmmfsrc camera id (default 0)
  --size WxH     camera size (default ${width}x${height}); NV12 at --fps (default $fps)
  --model        ONNX model (default models/selfie_segmentation.onnx; FFNet from AI Hub: --mode classes)
  --mode         segpostproc mode: overlay | background-blur | mask | classes (default overlay)
  --provider     ffnetinfer provider (default qnn; it falls back to the CPU with a warning
                 when the ONNX Runtime build has no QNN: see docs/troubleshooting.md)
  --provider-options  QNN EP options, e.g. "backend_path=libQnnHtp.so,htp_performance_mode=burst"
  --post         extra segpostproc properties, e.g. "smoothing=0.5 blur=5"
  --sink         display sink (default "$sink")
  --src-caps     camera caps instead of video/x-raw,format=NV12,width=W,height=H,framerate=F/1
  --after-src    elements between the camera caps and segpreproc. segpreproc maps frames in
                 system memory; if a BSP's qtiqmmfsrc only negotiates video/x-raw(memory:GBM),
                 pass e.g. --src-caps "video/x-raw(memory:GBM),format=NV12,width=1280,height=720"
                 and an element that outputs plain video/x-raw here (not verified on hardware)
  --check        videotestsrc (NV12, 30 frames), provider=cpu and fakesink: runs anywhere
On the board (Qualcomm Linux / Ubuntu for RB3 Gen2), with the plugin installed and a QNN-enabled
libonnxruntime.so found (ORT_DYLIB_PATH or ~/.local/lib/ffnetseg/), the HTP libraries need
ADSP_LIBRARY_PATH (docs/troubleshooting.md, "QNN error 1008").
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --camera) camera=$2; shift 2 ;;
    --size) width=${2%x*}; height=${2#*x}; shift 2 ;;
    --fps) fps=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --provider) provider=$2; shift 2 ;;
    --provider-options) provider_options=$2; shift 2 ;;
    --post) post=$2; shift 2 ;;
    --sink) sink=$2; shift 2 ;;
    --src-caps) src_caps=$2; shift 2 ;;
    --after-src) after_src=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$check" = 1 ]; then
  src="videotestsrc num-buffers=30 pattern=ball"; sink="fakesink"; provider=cpu
else
  src="qtiqmmfsrc name=camsrc camera=$camera"
fi
[ -z "$src_caps" ] && src_caps="video/x-raw,format=NV12,width=$width,height=$height,framerate=$fps/1"
[ -n "$after_src" ] && after_src="! $after_src"
opts=()
[ -n "$provider_options" ] && opts=(provider-options="$provider_options")
# shellcheck disable=SC2086
exec gst-launch-1.0 -q $src ! "$src_caps" $after_src ! \
  segpreproc ! ffnetinfer model="$model" provider=$provider "${opts[@]}" ! segpostproc mode=$mode $post ! \
  $sink
