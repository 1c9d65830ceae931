#!/usr/bin/env bash
# Soak test: 20,000 frames of 1080p NV12 through the whole pipeline, RSS sampled from /proc.
#
#   tests/reliability/soak.sh [--frames N] [--interval S] [--limit-kb KB] [--installed]
#
# Pipeline: videotestsrc ! NV12 1920x1080 ! segpreproc ! ffnetinfer model=models/selfie_segmentation.onnx
#           ! segpostproc ! fakesink
# Every --interval seconds (default 3) VmRSS of gst-launch-1.0 is read from /proc/PID/status.
# Warm-up is the first quarter of the samples (at least 5 samples): ONNX Runtime's arenas,
# buffer pools and OpenCV scratch images reach their size there. Drift is the median of the
# last 5 samples minus the median of the first 5 samples after warm-up; the script fails
# (exit 1) when drift >= 5 MiB (5120 kB), or when the pipeline does not reach EOS.
#
# The plugin tested is this checkout's newest build (target/release, cargo build --release
# -p gstffnetseg), loaded through GST_PLUGIN_PATH with a private registry so the per-user
# install is not used; --installed tests the installed plugin instead. Not part of make test
# (it takes several minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

FRAMES=20000
INTERVAL=3
LIMIT_KB=5120
INSTALLED=0
while [ $# -gt 0 ]; do
    case "$1" in
        --frames) FRAMES=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        --limit-kb) LIMIT_KB=$2; shift 2 ;;
        --installed) INSTALLED=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

TMP=$(mktemp -d /tmp/ffnetseg-soak.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [ "$INSTALLED" = 0 ]; then
    LIB=$(ls -t target/release/libgstffnetseg.so target/release/deps/libgstffnetseg.so 2>/dev/null | head -n1 || true)
    if [ -z "$LIB" ]; then
        echo "no plugin build: run cargo build --release -p gstffnetseg first (or pass --installed)" >&2
        exit 2
    fi
    mkdir -p "$TMP/plugins" "$TMP/xdg-data"
    # A copy, not a link: a rebuild during the run must not change the plugin under test.
    cp "$ROOT/$LIB" "$TMP/plugins/libgstffnetseg.so"
    export GST_PLUGIN_PATH="$TMP/plugins" GST_REGISTRY="$TMP/registry.bin" XDG_DATA_HOME="$TMP/xdg-data"
    echo "plugin: $LIB ($(stat -c %y "$LIB"))"
else
    echo "plugin: the installed one"
fi

MODEL=$ROOT/models/selfie_segmentation.onnx
LOG=$TMP/gst.log
echo "soak: $FRAMES frames of 1920x1080 NV12, RSS every ${INTERVAL}s"
START=$(date +%s)
gst-launch-1.0 -e videotestsrc num-buffers="$FRAMES" pattern=ball \
    ! video/x-raw,format=NV12,width=1920,height=1080,framerate=30/1 \
    ! segpreproc ! ffnetinfer model="$MODEL" ! segpostproc ! fakesink sync=false >"$LOG" 2>&1 &
PID=$!
SAMPLES=()
while kill -0 "$PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || true)
    if [ -n "$rss" ]; then
        SAMPLES+=("$rss")
        t=$(( $(date +%s) - START ))
        echo "  t=${t}s rss=${rss} kB"
    fi
    sleep "$INTERVAL"
done
set +e
wait "$PID"
RC=$?
set -e
END=$(date +%s)
if [ "$RC" != 0 ] || ! grep -q "Got EOS" "$LOG"; then
    echo "FAIL: the pipeline did not reach EOS (exit $RC):" >&2
    tail -n 20 "$LOG" >&2
    exit 1
fi
N=${#SAMPLES[@]}
if [ "$N" -lt 15 ]; then
    echo "FAIL: only $N RSS samples; run longer (--frames) or sample faster (--interval)" >&2
    exit 1
fi
printf '%s\n' "${SAMPLES[@]}" | python3 -c '
import statistics, sys
s = [int(x) for x in sys.stdin.read().split()]
limit, frames, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
warm = max(5, len(s) // 4)
after = s[warm:]
base = statistics.median(after[:5])
last = statistics.median(after[-5:])
drift = last - base
print(f"frames: {frames} in {secs} s ({frames / max(secs, 1):.1f} frames/s)")
print(f"samples: {len(s)}, warm-up: first {warm}")
print(f"RSS: start {s[0]} kB, after warm-up {base:.0f} kB, end {last:.0f} kB, "
      f"min/max after warm-up {min(after)}/{max(after)} kB, peak {max(s)} kB")
print(f"drift after warm-up: {drift:+.0f} kB (limit {limit} kB)")
sys.exit(0 if drift < limit else 1)
' "$LIMIT_KB" "$FRAMES" "$((END - START))" && echo "PASS" || { echo "FAIL: RSS drift >= ${LIMIT_KB} kB"; exit 1; }
