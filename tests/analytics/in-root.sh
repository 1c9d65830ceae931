#!/usr/bin/env bash
# Runs a command inside the Debian 13 root that tests/analytics/make-root.sh made, in this
# repository's folder there:
#
#   tests/analytics/in-root.sh 'cargo build --release -p gstffnetseg --features analytics'
#
# In a private mount namespace (the mounts go away with the command) it bind-mounts, at the
# same paths: this repository, the folder the .venv link points to (the ONNX Runtime the
# tests use), ~/.cargo and ~/.rustup (this machine's Rust: Debian 13's rustc is too old).
# Cargo builds into $CARGO_TARGET_DIR/analytics/cargo, apart from this machine's builds
# (another GStreamer), offline (the crates come from ~/.cargo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
T=${CARGO_TARGET_DIR:-$repo/target}
root=$T/analytics/root
[ -x "$root/usr/bin/gst-inspect-1.0" ] || { echo "no Debian 13 root at $root: run tests/analytics/make-root.sh" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: $0 'command'" >&2; exit 2; }
venv=$(readlink -f "$repo/.venv" 2>/dev/null || true)
ort=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* 2>/dev/null | head -1 || true)
# The opencv crate finds the three OpenCV modules the engine links without libopencv-dev's
# pkg-config file (libopencv-dev would pull every OpenCV module and VTK into the root).
inner_env=(PATH=/root/.cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8
  CARGO_TARGET_DIR="$T/analytics/cargo" CARGO_NET_OFFLINE=true
  OPENCV_LINK_LIBS=opencv_core,opencv_imgproc,opencv_imgcodecs
  OPENCV_LINK_PATHS=/usr/lib/x86_64-linux-gnu OPENCV_INCLUDE_PATHS=/usr/include/opencv4
  ORT_DYLIB_PATH="$ort" REPO="$repo" ROOT_T="$T")
unshare --mount --propagation private bash -s -- "$root" "$repo" "$venv" "${HOME:-/root}" "$*" "${inner_env[@]}" <<'INNER'
set -euo pipefail
r=$1 repo=$2 venv=$3 home=$4 cmd=$5; shift 5
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
for d in "$repo" ${venv:+"$venv"}; do
  mkdir -p "$r$d"; mount --bind "$d" "$r$d"
done
for d in .cargo .rustup; do
  mkdir -p "$r/root/$d"; mount --bind "$home/$d" "$r/root/$d"
done
exec chroot "$r" env -i "$@" bash -c "cd '$repo' && $cmd"
INNER
