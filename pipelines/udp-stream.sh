#!/usr/bin/env bash
# Headless board: camera (or file) → segmentation → H.264 → RTP over UDP, to be watched on
# another machine. Sends to 127.0.0.1 unless --host names the viewer; the receiving
# pipeline is printed by --help and at start.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
device=/dev/video0; input=""; width=1280; height=720
host=127.0.0.1; port=5000; bitrate=2000
model=$here/../models/selfie_segmentation.onnx
mode=overlay; provider=auto; post=""; frames=-1; check=0
receiver() {
  echo "gst-launch-1.0 udpsrc port=$1 caps=\"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96\" ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! autovideosink sync=false"
}
usage() {
  cat <<USAGE
Usage: $0 [--device /dev/videoN | --input FILE] [--size WxH] [--host ADDR] [--port N]
          [--bitrate KBPS] [--model MODEL.onnx] [--mode MODE] [--provider P] [--post "PROPS"]
          [--frames N] [--check]
  --device    camera (default $device) at --size (default ${width}x${height})
  --input     a video file instead of the camera (sent at its own frame rate)
  --host      receiver address (default $host); --port (default $port)
  --bitrate   H.264 bitrate in kbit/s (default $bitrate)
  --mode      segpostproc mode: overlay | background-blur | classes (default $mode)
  --provider  ffnetinfer provider (default auto; qnn on a Snapdragon board)
  --frames N  stop after N frames
  --check     sends 30 videotestsrc frames to a receiver on 127.0.0.1 that this script starts,
              and passes when the receiver decodes 25 of them (loopback only; used by make test)
Receiver (on the viewing machine):
  $(receiver "$port")
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --input) input=$2; shift 2 ;;
    --size) width=${2%x*}; height=${2#*x}; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bitrate) bitrate=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --provider) provider=$2; shift 2 ;;
    --post) post=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
read -r -a extra <<<"$post"
caps="application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96"

if [ "$check" = 1 ]; then
  # Loopback only, bounded: a free UDP port on 127.0.0.1, a receiver that stops by itself
  # after 25 decoded frames (or is killed after 20 s), and a sender of 30 live frames.
  host=127.0.0.1
  port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  timeout 20 gst-launch-1.0 -q udpsrc address=127.0.0.1 port="$port" caps="$caps" ! \
    rtph264depay ! h264parse ! avdec_h264 ! identity eos-after=25 ! fakesink >"$log" 2>&1 &
  receiver_pid=$!
  sleep 1
  gst-launch-1.0 -q videotestsrc is-live=true num-buffers=30 pattern=ball ! \
    video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! \
    segpreproc ! ffnetinfer model="$model" provider=cpu ! segpostproc mode="$mode" "${extra[@]}" ! \
    videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate="$bitrate" ! \
    rtph264pay config-interval=-1 pt=96 ! udpsink host=127.0.0.1 port="$port" sync=true
  if wait "$receiver_pid"; then
    echo "udp-stream check: the receiver on 127.0.0.1:$port decoded 25 segmented frames"
    exit 0
  fi
  echo "udp-stream check FAILED: the receiver on 127.0.0.1:$port did not decode 25 frames" >&2
  cat "$log" >&2
  exit 1
fi

if [ -n "$input" ]; then
  # A file is paced by udpsink's clock sync, as a camera would be.
  src=(filesrc location="$input" ! decodebin)
else
  src=(v4l2src device="$device" ! "video/x-raw,width=$width,height=$height")
fi
limit=()
[ "$frames" -gt 0 ] && limit=(! identity eos-after="$frames")
echo "Streaming RTP/H.264 to $host:$port; watch it with:" >&2
echo "  $(receiver "$port")" >&2
exec gst-launch-1.0 -q -e "${src[@]}" "${limit[@]}" ! videoconvert ! \
  segpreproc ! ffnetinfer model="$model" provider="$provider" ! segpostproc mode="$mode" "${extra[@]}" ! \
  videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate="$bitrate" ! \
  rtph264pay config-interval=-1 pt=96 ! udpsink host="$host" port="$port" sync=true
