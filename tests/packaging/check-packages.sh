#!/usr/bin/env bash
# Installs ffnetseg's Debian packages (plugins/packaging/build-debs.sh) into a clean Debian 12
# root that never saw the build, runs the README's file pipeline there with gst-launch-1.0 on
# vtest.avi, and compares the masks with the same pipeline on the development build.
#
#   tests/packaging/check-packages.sh [--arch amd64|arm64] [--frames N] [--debs DIR]
#
# amd64: mmdebstrap makes a minimal bookworm root (variant apt: no -dev package, no Rust, no
#   Python), then inside it `apt-get install ./ffnetseg_*.deb ./ffnetseg-onnxruntime_*.deb
#   ./ffnetseg-models_*.deb ./ffnetseg-tools_*.deb gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-libav`
#   resolves the packages' declared dependencies from Debian's archive. The pipeline runs with
#   no environment variable: GStreamer finds the plugin in its system folder, the plugin finds
#   /usr/lib/ffnetseg/libonnxruntime.so. Masks must be byte-identical to the development
#   build's (the host's target/release/libgstffnetseg.so via GST_PLUGIN_PATH, the venv's ONNX
#   Runtime via ORT_DYLIB_PATH: the same ONNX Runtime version as the package's).
# arm64: apt (on this machine, for arm64) resolves the same packages' dependencies from
#   Debian's arm64 archive and mmdebstrap extracts them (no arm64 code can run maintainer
#   scripts here: no binfmt_misc), then the root's gst-launch-1.0 runs chrooted into it
#   through qemu-aarch64-static, with the board's paths and no environment variable. arm64 and x86-64 floating point differ in the last bits, so the
#   masks must agree on ≥ 99.9 % of the pixels (docs/cross-compile.md measured 1 in 4.4 M).
#
# Downloaded .deb files are kept in $CARGO_TARGET_DIR/packaging/apt-cache-<arch> for the next
# run; the root itself is made fresh each time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
T=${CARGO_TARGET_DIR:-$root/target}
arch=amd64; frames=30; debs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --debs) debs=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
debs=$(cd "${debs:-$T/packages}" && pwd)
work=$T/packaging/check-$arch
cache=$T/packaging/apt-cache-$arch
media=/usr/share/doc/opencv-doc/examples/data/vtest.avi
mkdir -p "$work" "$cache"
start=$(date +%s)
pick() { ls "$debs"/"$1"_*_"$2".deb 2>/dev/null | sort -V | tail -1 || true; }
want=()
for p in ffnetseg:$arch ffnetseg-onnxruntime:$arch ffnetseg-models:all ffnetseg-tools:$arch; do
  f=$(pick "${p%%:*}" "${p##*:}")
  if [ -n "$f" ]; then want+=("$f")
  elif [ "${p%%:*}" != ffnetseg-tools ]; then echo "no ${p%%:*} package for $arch in $debs (make packages)"; exit 1; fi
done
echo "== packages under test:"; for f in "${want[@]}"; do echo "   $(basename "$f")"; done
sources=("deb http://deb.debian.org/debian bookworm main" "deb http://deb.debian.org/debian-security bookworm-security main")
# The README's file pipeline with decodebin spelled out (vtest.avi is MS-MPEG-4 v3): with
# gst-libav's default direct rendering the decoder writes into a frame it already pushed, so
# the mask of the frame in flight when the stream stops differs from run to run (measured on
# the development build alone: 1,300-1,900 pixels of the 30th mask, and the decoded frames
# themselves); direct-rendering=false makes every run identical.
pipeline=(filesrc location=/tmp/check/vtest.avi ! avidemux ! avdec_msmpeg4 direct-rendering=false ! videoconvert !
  segpreproc ! ffnetinfer model=/usr/share/ffnetseg/models/selfie_segmentation.onnx ! segpostproc mode=mask !
  identity eos-after="$((frames + 1))" ! filesink)

# Model and media at the packages' paths inside the root, at copies outside.
rm -rf "$work/root" "$work/check"; mkdir -p "$work/check"
cp "$media" "$work/check/vtest.avi"

if [ "$arch" = amd64 ]; then
  # Inside the root, with a clean environment: nothing from this machine's build is visible.
  inside='env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8'
  install_cmd="cd /tmp/check/debs && $inside DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(for f in "${want[@]}"; do printf './%s ' "$(basename "$f")"; done) gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-libav"
  mkdir -p "$work/check/debs"; cp "${want[@]}" "$work/check/debs/"
  echo "== mmdebstrap: clean bookworm root (variant apt), then inside it: apt-get install ./ffnetseg*.deb …"
  t0=$(date +%s)
  mmdebstrap --quiet --variant=apt --mode=root \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="cp -a $cache/. \"\$1/var/cache/apt/archives/\" 2>/dev/null || true" \
    --customize-hook="cp -a $work/check \"\$1/tmp/\"" \
    --customize-hook="chroot \"\$1\" sh -c '$install_cmd' > $work/apt.log 2>&1 || { tail -30 $work/apt.log; exit 1; }" \
    --customize-hook="cp -a \"\$1\"/var/cache/apt/archives/*.deb $cache/ 2>/dev/null || true" \
    --customize-hook="chroot \"\$1\" sh -c 'dpkg-query -W -f=\"\\\${Package}\\n\" | grep -E \"(-dev|rustc|cargo|python3)\$\" || true' > $work/forbidden.txt" \
    --customize-hook="chroot \"\$1\" $inside gst-inspect-1.0 ffnetseg > $work/inspect.txt 2>&1" \
    --customize-hook="chroot \"\$1\" $inside sh -c 'command -v segtool >/dev/null && segtool inspect /usr/share/ffnetseg/models/selfie_segmentation.onnx' > $work/segtool.txt 2>&1 || true" \
    --customize-hook="chroot \"\$1\" $inside gst-launch-1.0 -q ${pipeline[*]} location=/tmp/check/packaged.gray > $work/gst.log 2>&1 || { cat $work/gst.log; exit 1; }" \
    --customize-hook="cp \"\$1\"/tmp/check/packaged.gray $work/" \
    --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Package} \${Version}\\n' > $work/installed.txt" \
    bookworm "$work/root" "${sources[@]}"
  echo "   root made, packages installed and pipeline run in $(( $(date +%s) - t0 )) s"
  echo "== apt-get install inside the root:"; grep -E "^(Need to get|After this|Setting up ffnetseg)" "$work/apt.log" | sed 's/^/   /'
  echo "   $(wc -l < "$work/installed.txt") packages in the root"
  if [ -s "$work/forbidden.txt" ]; then echo "FAIL: the root holds build packages:"; cat "$work/forbidden.txt"; exit 1; fi
  echo "   no -dev, Rust or Python package in the root"
  grep -E "^(Filename|Version|Plugin Details)|segpreproc|ffnetinfer|segpostproc" "$work/inspect.txt" | head -8 | sed 's/^/   /'
  [ -s "$work/segtool.txt" ] && { echo "== segtool inspect (inside the root):"; head -6 "$work/segtool.txt" | sed 's/^/   /'; }
  rm -rf "$work/root"
else
  [ -x /usr/bin/qemu-aarch64-static ] || { echo "qemu-aarch64-static missing (apt-get install qemu-user-static)"; exit 1; }
  echo "== apt resolves the arm64 packages' dependencies from Debian's arm64 archive; mmdebstrap extracts them"
  t0=$(date +%s)
  inc=(); for f in "${want[@]}"; do inc+=(--include="$f"); done
  mmdebstrap --quiet --variant=extract --architectures=arm64 --mode=root \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="cp -a $cache/. \"\$1/var/cache/apt/archives/\" 2>/dev/null || true" \
    --setup-hook="mkdir -p \"\$1$debs\" && cp ${want[*]} \"\$1$debs/\"" \
    --include=gstreamer1.0-tools,gstreamer1.0-plugins-good,gstreamer1.0-libav "${inc[@]}" \
    --customize-hook="cp -a \"\$1\"/var/cache/apt/archives/*.deb $cache/ 2>/dev/null || true" \
    bookworm "$work/root" "${sources[@]}"
  rm -rf "$work/root$debs"  # the copies apt's paths needed inside the root
  # Debian selects BLAS/LAPACK with update-alternatives, which an extract does not run.
  ln -sf lapack/liblapack.so.3 "$work/root/usr/lib/aarch64-linux-gnu/liblapack.so.3"
  ln -sf blas/libblas.so.3 "$work/root/usr/lib/aarch64-linux-gnu/libblas.so.3"
  echo "   root extracted in $(( $(date +%s) - t0 )) s: $(ls "$work/root/usr/share/doc" | wc -l) packages"
  ls "$work/root/usr/lib/aarch64-linux-gnu/gstreamer-1.0/libgstffnetseg.so" "$work/root/usr/lib/ffnetseg/libonnxruntime.so" >/dev/null
  cp -a "$work/check" "$work/root/tmp/"
  t0=$(date +%s)
  # The root's arm64 programs run inside it (chroot) through the static qemu-aarch64, so every
  # path is the board's: GStreamer's system plugin folder, /usr/lib/ffnetseg, the model.
  # No environment variable points at the packages; GST_REGISTRY_FORK=no because the plugin
  # scanner, a second arm64 program, cannot be started without binfmt_misc.
  cp /usr/bin/qemu-aarch64-static "$work/root/usr/bin/"
  inside=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 GST_REGISTRY_FORK=no
    chroot "$work/root" /usr/bin/qemu-aarch64-static)
  "${inside[@]}" /usr/bin/gst-inspect-1.0 ffnetseg > "$work/inspect.txt" 2>&1 ||
    { cat "$work/inspect.txt"; exit 1; }
  "${inside[@]}" /usr/bin/gst-launch-1.0 -q "${pipeline[@]}" location=/tmp/check/packaged.gray \
    > "$work/gst.log" 2>&1 || { cat "$work/gst.log"; exit 1; }
  cp "$work/root/tmp/check/packaged.gray" "$work/"
  echo "   pipeline under qemu-aarch64: $(( $(date +%s) - t0 )) s"
  grep -E "^(Filename|Version)|segpreproc|ffnetinfer|segpostproc" "$work/inspect.txt" | head -6 | sed 's/^/   /'
  rm -rf "$work/root"
fi

# The development build, on this machine: a copy of target/release/libgstffnetseg.so through
# GST_PLUGIN_PATH (and only the system plugins beside it), the venv's ONNX Runtime.
dev=$work/dev; rm -rf "$dev"; mkdir -p "$dev/plugins"
cp "$T/release/libgstffnetseg.so" "$dev/plugins/"
ort=$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.* | head -1)
host_pipeline=("${pipeline[@]/location=\/tmp\/check\/vtest.avi/location=$work/check/vtest.avi}")
host_pipeline=("${host_pipeline[@]/model=\/usr\/share\/ffnetseg\/models\/selfie_segmentation.onnx/model=$root/models/selfie_segmentation.onnx}")
GST_PLUGIN_PATH=$dev/plugins GST_PLUGIN_SYSTEM_PATH_1_0=/usr/lib/x86_64-linux-gnu/gstreamer-1.0 \
  GST_REGISTRY_1_0=$dev/registry.bin ORT_DYLIB_PATH=$ort \
  gst-launch-1.0 -q "${host_pipeline[@]}" location="$dev/dev.gray"
echo "== development build: $T/release/libgstffnetseg.so + $(basename "$ort") (venv)"
a=$work/packaged.gray b=$dev/dev.gray
printf '   packaged %s: %s bytes md5 %s\n   dev build:      %s bytes md5 %s\n' "$arch" \
  "$(stat -c %s "$a")" "$(md5sum < "$a" | cut -c1-32)" "$(stat -c %s "$b")" "$(md5sum < "$b" | cut -c1-32)"
expected=$((768 * 576 * frames))
[ "$(stat -c %s "$a")" = "$expected" ] || { echo "FAIL: expected $expected bytes ($frames masks of 768x576)"; exit 1; }
if [ "$arch" = amd64 ]; then
  cmp "$a" "$b" && echo "PASS: $frames masks byte-identical to the development build's ($(( $(date +%s) - start )) s)" ||
    { echo "FAIL: masks differ"; exit 1; }
else
  python3 - "$a" "$b" "$frames" "$(( $(date +%s) - start ))" <<'PY'
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
if len(a) != len(b):
    sys.exit(f"FAIL: mask sizes {len(a)} (arm64) and {len(b)} (dev build)")
diff = sum(x != y for x, y in zip(a, b))
agree = 1 - diff / len(a)
print(f"   {diff} of {len(a)} pixels differ ({100 * agree:.4f}% agree)")
if agree < 0.999:
    sys.exit("FAIL: below 99.9% agreement")
print(f"PASS: arm64 packages under qemu-aarch64, {sys.argv[3]} masks agree with the development build's ({sys.argv[4]} s)")
PY
fi
