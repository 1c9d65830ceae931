#!/usr/bin/env bash
# A Debian 13 (trixie) root with GStreamer 1.26 and its analytics library, for building and
# testing the plugin's `analytics` feature (docs/analytics.md). Debian 12, the build floor,
# has GStreamer 1.22 and no libgstanalytics-1.0.
#
#   tests/analytics/make-root.sh            make the root, or bring an existing one up to date
#   tests/analytics/make-root.sh --fresh    remove it and make it again
#
# The root is $CARGO_TARGET_DIR/analytics/root (default target/analytics/root), made with
# mmdebstrap from deb.debian.org. It holds only Debian's packages: GStreamer 1.26 -dev
# packages (libgstreamer-plugins-bad1.0-dev has GstAnalytics), the OpenCV modules the engine
# uses, clang for the opencv crate's bindings, Python GI with GstAnalytics' typelib, and
# gstreamer1.0-plugins-bad (with the onnx plugin: onnxinference). Rust is NOT installed in
# it: Debian 13's rustc is older than the workspace's rust-version, so
# tests/analytics/in-root.sh bind-mounts this machine's ~/.cargo and ~/.rustup.
# Downloaded .deb files are kept in $CARGO_TARGET_DIR/analytics/apt-cache for the next run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
T=${CARGO_TARGET_DIR:-$repo/target}
dir=$T/analytics
root=$dir/root
cache=$dir/apt-cache
fresh=0
case "${1:-}" in
  --fresh) fresh=1 ;;
  "") ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
esac
command -v mmdebstrap >/dev/null || {
  echo "mmdebstrap is missing: installing it"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap
}
packages=(
  build-essential pkg-config ca-certificates clang libclang-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  python3 python3-gi python3-numpy gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gir1.2-gst-plugins-bad-1.0
)
[ "$fresh" = 1 ] && rm -rf "$root"
mkdir -p "$dir" "$cache"
if [ -x "$root/usr/bin/gst-inspect-1.0" ] && [ -f "$root/etc/debian_version" ]; then
  echo "== updating $root (Debian $(cat "$root/etc/debian_version"))"
  missing=$(chroot "$root" dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>&1 |
    grep -v 'ok installed' | awk '{print $1}' | sed 's/^dpkg-query:.*package.//;s/.$//' || true)
  if [ -n "$missing" ]; then
    chroot "$root" apt-get update -qq
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
  else
    echo "   all ${#packages[@]} packages present"
  fi
else
  rm -rf "$root"
  echo "== mmdebstrap: Debian 13 (trixie) into $root"
  t0=$(date +%s)
  mmdebstrap --quiet --variant=apt --mode=root \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="cp -a $cache/. \"\$1/var/cache/apt/archives/\" 2>/dev/null || true" \
    --customize-hook="cp -a \"\$1\"/var/cache/apt/archives/*.deb $cache/ 2>/dev/null || true" \
    --customize-hook='mkdir -p "$1/work" "$1/root/.cargo" "$1/root/.rustup"' \
    trixie "$root" "deb http://deb.debian.org/debian trixie main"
  echo "   made in $(( $(date +%s) - t0 )) s"
fi
echo "== root: Debian $(cat "$root/etc/debian_version"), GStreamer $(chroot "$root" pkg-config --modversion gstreamer-1.0)," \
  "gstreamer-analytics-1.0 $(chroot "$root" pkg-config --modversion gstreamer-analytics-1.0 2>/dev/null || echo MISSING)"
