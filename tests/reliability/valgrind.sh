#!/usr/bin/env bash
# Leak check: valgrind memcheck over (1) a short gst-launch-1.0 run of the whole pipeline and
# (2) 50 NULL -> PLAYING -> NULL cycles (tests/reliability/cycles.c, sync and async in turn).
# Prints "definitely lost" bytes from our code (any stack frame in libgstffnetseg.so) and
# from third-party code only; exits 1 when our code lost anything.
#
#   tests/reliability/valgrind.sh [--cycles N] [--frames N] [--installed]
#
# Needs valgrind (apt-get install valgrind) and a C compiler with GStreamer's headers.
# Tests this checkout's newest build (target/release) through GST_PLUGIN_PATH and a private
# registry; --installed tests the per-user install. Suppressions for third-party libraries
# are in tests/reliability/ffnetseg.supp, each with its reason. Not part of make test
# (minutes under valgrind). XML reports are kept in out/valgrind/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CYCLES=50
FRAMES=20
INSTALLED=0
while [ $# -gt 0 ]; do
    case "$1" in
        --cycles) CYCLES=$2; shift 2 ;;
        --frames) FRAMES=$2; shift 2 ;;
        --installed) INSTALLED=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 2; }

OUT=$ROOT/out/valgrind
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/ffnetseg-valgrind.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [ "$INSTALLED" = 0 ]; then
    LIB=$(ls -t target/release/libgstffnetseg.so target/release/deps/libgstffnetseg.so 2>/dev/null | head -n1 || true)
    [ -n "$LIB" ] || { echo "no plugin build: cargo build --release -p gstffnetseg (or --installed)" >&2; exit 2; }
    mkdir -p "$TMP/plugins" "$TMP/xdg-data"
    # A copy, not a link: a rebuild during the run must not change the plugin under test.
    cp "$ROOT/$LIB" "$TMP/plugins/libgstffnetseg.so"
    export GST_PLUGIN_PATH="$TMP/plugins" XDG_DATA_HOME="$TMP/xdg-data"
    echo "plugin: $LIB ($(stat -c %y "$LIB"))"
fi
export GST_REGISTRY="$TMP/registry.bin"
# Build the registry outside valgrind (the plugin scanner is a child process).
gst-inspect-1.0 ffnetinfer >/dev/null

cc -O1 -g -o "$TMP/cycles" tests/reliability/cycles.c $(pkg-config --cflags --libs gstreamer-1.0)

# --fair-sched: valgrind runs one thread at a time; without fair scheduling the streaming
# thread can keep the lock for hundreds of frames and starve the state changes of the cycles.
VG=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible
    --errors-for-leak-kinds=definite --num-callers=40 --track-origins=no --fair-sched=yes
    --suppressions="$ROOT/tests/reliability/ffnetseg.supp" --xml=yes)
export G_SLICE=always-malloc G_DEBUG=gc-friendly

echo "== 1. gst-launch-1.0: $FRAMES frames of 320x240 NV12, selfie model, overlay"
T0=$(date +%s)
"${VG[@]}" --xml-file="$OUT/pipeline.xml" gst-launch-1.0 -q videotestsrc num-buffers="$FRAMES" \
    ! video/x-raw,format=NV12,width=320,height=240 ! segpreproc \
    ! ffnetinfer model="$ROOT/models/selfie_segmentation.onnx" ! segpostproc mode=overlay \
    ! fakesink > "$OUT/pipeline.log" 2>&1 || { echo "gst-launch-1.0 failed:"; tail "$OUT/pipeline.log"; exit 1; }
echo "   $(( $(date +%s) - T0 )) s under valgrind"

echo "== 2. $CYCLES NULL <-> PLAYING cycles, tiny FFNet model, sync/async in turn"
T0=$(date +%s)
"${VG[@]}" --xml-file="$OUT/cycles.xml" "$TMP/cycles" "$ROOT/models/test_ffnet_tiny.onnx" "$CYCLES" \
    > "$OUT/cycles.log" 2>&1 || { echo "cycles failed:"; tail "$OUT/cycles.log"; exit 1; }
cat "$OUT/cycles.log"
echo "   $(( $(date +%s) - T0 )) s under valgrind"

python3 tests/reliability/leaks.py "$OUT/pipeline.xml" "$OUT/cycles.xml"
