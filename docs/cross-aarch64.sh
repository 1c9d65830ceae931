#!/usr/bin/env bash
# Cross-compiles the plugin (libgstffnetseg.so) for 64-bit Arm Linux boards
# (aarch64-unknown-linux-gnu: RB3 Gen2 / QCS6490, QCS8550, Raspberry Pi 4/5, …) on an x86_64
# Debian/Ubuntu machine, then checks the result: an AArch64 ELF whose NEEDED libraries are
# only GStreamer, GLib, OpenCV core/imgproc/imgcodecs and the C/C++ runtime. See docs/cross-compile.md.
#
#   docs/cross-aarch64.sh [--sysroot DIR] [--suite bookworm] [--mirror URL] [--target-dir DIR]
#                         [--check-only] [--qemu] [--print-env]
#
# --qemu also runs the aarch64 plugin under qemu-user (Debian's arm64 GStreamer in a second
# extracted root, the PyPI onnxruntime 1.23.0 aarch64 wheel's library) on 10 frames of
# vtest.avi, and compares its masks with this machine's build of the same pipeline.
# --print-env prints the cross environment as export lines (for meson, see the doc).
#
# The target libraries come from an arm64 sysroot that mmdebstrap extracts from Debian's
# archive (nothing is installed into the host system; Debian 12's
# libgstreamer-plugins-base1.0-dev:arm64 cannot be installed next to the amd64 one).
# The sysroot's suite decides which boards the plugin runs on: bookworm = GStreamer 1.22,
# OpenCV 4.6 (libopencv_core.so.406), glibc 2.36 — Debian 12 and Ubuntu 24.04 boards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=aarch64-unknown-linux-gnu
suite=bookworm
mirror=http://deb.debian.org/debian
sysroot=""
target_dir=$root/target
check_only=0; qemu=0; print_env=0
while [ $# -gt 0 ]; do
  case "$1" in
    --sysroot) sysroot=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --target-dir) target_dir=$2; shift 2 ;;
    --check-only) check_only=1; shift ;;
    --qemu) qemu=1; shift ;;
    --print-env) print_env=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$sysroot" ] || sysroot=$target_dir/sysroot-$suite-arm64
so=$target_dir/$target/release/libgstffnetseg.so
# 4. The build environment. pkg-config (gstreamer-rs's system-deps) and the opencv crate look
#    in the sysroot; the target-scoped variables leave the host's build scripts alone.
cross_env() {
  lib=$sysroot/usr/lib/aarch64-linux-gnu
  export PKG_CONFIG_ALLOW_CROSS=1
  export PKG_CONFIG_SYSROOT_DIR_aarch64_unknown_linux_gnu=$sysroot
  export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=$lib/pkgconfig:$sysroot/usr/share/pkgconfig
  export PKG_CONFIG_PATH_aarch64_unknown_linux_gnu=""
  # Debian's libopencv-core-dev has no opencv4.pc (libopencv-dev, which has it, pulls in all
  # of OpenCV): name the two modules the engine uses.
  export OPENCV_LINK_LIBS=opencv_core,opencv_imgproc,opencv_imgcodecs
  export OPENCV_LINK_PATHS=$lib
  export OPENCV_INCLUDE_PATHS=$sysroot/usr/include/opencv4,$sysroot/usr/include/aarch64-linux-gnu/opencv4
  export OPENCV_DISABLE_PROBES=pkg_config,cmake,vcpkg_cmake,vcpkg
  # The binding generator parses the headers with the host clang (its own include list is
  # x86_64); the API it reads is the same on both 64-bit targets.
  export OPENCV_CLANG_ARGS=""
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
  export CFLAGS_aarch64_unknown_linux_gnu="--sysroot=$sysroot"
  export CXXFLAGS_aarch64_unknown_linux_gnu="--sysroot=$sysroot"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$sysroot"
}

export PATH="$PATH:$HOME/.cargo/bin"
if [ "$print_env" = 1 ]; then
  # For other build drivers (meson -Drust-target=…): eval "$(docs/cross-aarch64.sh --print-env)"
  cross_env
  for v in PKG_CONFIG_ALLOW_CROSS PKG_CONFIG_SYSROOT_DIR_aarch64_unknown_linux_gnu \
      PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu PKG_CONFIG_PATH_aarch64_unknown_linux_gnu \
      OPENCV_LINK_LIBS OPENCV_LINK_PATHS OPENCV_INCLUDE_PATHS OPENCV_DISABLE_PROBES OPENCV_CLANG_ARGS \
      CC_aarch64_unknown_linux_gnu CXX_aarch64_unknown_linux_gnu CFLAGS_aarch64_unknown_linux_gnu \
      CXXFLAGS_aarch64_unknown_linux_gnu CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER \
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
  exit 0
fi
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo

if [ "$check_only" = 0 ]; then
  # 1. Host tools: the cross C/C++ toolchain (links the plugin, compiles OpenCV's C++ glue),
  #    mmdebstrap (makes the sysroot), clang/libclang (the opencv crate's binding generator).
  missing=""
  for p in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu mmdebstrap clang libclang-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "== Installing:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
  fi

  # 2. Rust's standard library for the target (rustup downloads it once).
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "== rustup target add $target"
    rustup target add "$target"
  fi

  # 3. The arm64 sysroot: the -dev packages the crates link against, with their dependencies.
  if [ ! -e "$sysroot/.complete" ]; then
    echo "== Extracting an arm64 $suite sysroot into $sysroot (about 500 MB)"
    rm -rf "$sysroot"
    mkdir -p "$(dirname "$sysroot")"
    sources=("deb $mirror $suite main")
    [ "$suite" = bookworm ] && sources+=("deb http://deb.debian.org/debian-security bookworm-security main")
    mode=root; [ "$(id -u)" = 0 ] || mode=unshare
    mmdebstrap --variant=extract --architectures=arm64 --mode=$mode \
      --include=libgstreamer1.0-dev,libgstreamer-plugins-base1.0-dev,libopencv-core-dev,libopencv-imgproc-dev,libopencv-imgcodecs-dev,libc6-dev,libstdc++-12-dev \
      "$suite" "$sysroot" "${sources[@]}"
    touch "$sysroot/.complete"
  fi

  # 4. Build (environment: see cross_env above).
  cross_env
  echo "== cargo build --release --target $target -p gstffnetseg"
  cargo build --manifest-path "$root/Cargo.toml" --release --target "$target" \
    --target-dir "$target_dir" -p gstffnetseg --lib
fi

# 5. Check what was built: architecture, and that it needs nothing a board lacks.
[ -f "$so" ] || { echo "cross check: FAIL — $so does not exist"; exit 1; }
machine=$(readelf -h "$so" | sed -n 's/^ *Machine: *//p')
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "== $so"
echo "Machine: $machine"
echo "NEEDED:"; sed 's/^/  /' <<<"$needed"
glibc=$(readelf -V "$so" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "newest glibc symbol version: $glibc"
fail=0
[ "$machine" = "AArch64" ] || { echo "cross check: FAIL — not an AArch64 ELF"; fail=1; }
# Allowed: GStreamer core/base/video, GLib/GObject, OpenCV core+imgproc+imgcodecs, C/C++ runtime.
# ONNX Runtime must NOT be here: the plugin dlopens it at run time (ort's load-dynamic).
allowed='^(libgst(reamer|base|video)-1\.0\.so\.0|lib(glib|gobject|gmodule|gio)-2\.0\.so\.0|libopencv_(core|imgproc|imgcodecs)\.so\.[0-9a-z.]+|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux-aarch64\.so\.1)$'
while read -r lib; do
  [ -z "$lib" ] && continue
  grep -Eq "$allowed" <<<"$lib" || { echo "cross check: FAIL — unexpected NEEDED $lib"; fail=1; }
done <<<"$needed"
[ "$fail" = 0 ] || exit 1
echo "cross check: PASS — copy $so to the board's GStreamer plugin dir"
echo "  (e.g. /usr/lib/aarch64-linux-gnu/gstreamer-1.0/ or ~/.local/share/gstreamer-1.0/plugins/)"
[ "$qemu" = 1 ] || exit 0

# 6. Optional: run it. qemu-user emulates an arm64 CPU; an extracted root provides arm64
#    gst-launch-1.0 and plugins, the PyPI wheel provides libonnxruntime.so. ONNX Runtime
#    1.23.0 because newer wheels crash while loading under Debian 12's qemu 7.2 (a qemu
#    limitation, not the plugin's); 1.22.0 is too old for the engine's session options.
ort_version=1.23.0
runroot=$target_dir/runroot-$suite-arm64
work=$target_dir/qemu-check
if ! command -v qemu-aarch64 >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends qemu-user
fi
if [ ! -e "$runroot/.complete" ]; then
  echo "== Extracting an arm64 $suite run root into $runroot (about 300 MB)"
  rm -rf "$runroot"
  sources=("deb $mirror $suite main")
  [ "$suite" = bookworm ] && sources+=("deb http://deb.debian.org/debian-security bookworm-security main")
  mode=root; [ "$(id -u)" = 0 ] || mode=unshare
  mmdebstrap --variant=extract --architectures=arm64 --mode=$mode \
    --include=gstreamer1.0-tools,gstreamer1.0-plugins-base,libopencv-core406,libopencv-imgproc406,libopencv-imgcodecs406 \
    "$suite" "$runroot" "${sources[@]}"
  # Debian selects BLAS/LAPACK with update-alternatives, which an extract does not run.
  ln -sf lapack/liblapack.so.3 "$runroot/usr/lib/aarch64-linux-gnu/liblapack.so.3"
  ln -sf blas/libblas.so.3 "$runroot/usr/lib/aarch64-linux-gnu/libblas.so.3"
  touch "$runroot/.complete"
fi
mkdir -p "$work/plugins" "$work/ort"
cp "$so" "$work/plugins/"
ort_lib=$(ls "$work"/ort/onnxruntime/capi/libonnxruntime.so.1.* 2>/dev/null | head -1 || true)
if [ -z "$ort_lib" ]; then
  pip=$root/.venv/bin/pip; [ -x "$pip" ] || pip="python3 -m pip"
  $pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
    --python-version 3.11 --dest "$work" "onnxruntime==$ort_version"
  python3 -m zipfile -e "$work"/onnxruntime-"$ort_version"-*aarch64*.whl "$work/ort"
  ort_lib=$(ls "$work"/ort/onnxruntime/capi/libonnxruntime.so.1.* | head -1)
fi
media=/usr/share/doc/opencv-doc/examples/data/vtest.avi
# Raw I420 frames decoded here, so both runs segment exactly the same pixels.
gst-launch-1.0 -q filesrc location="$media" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! \
  identity eos-after=10 ! filesink location="$work/frames.i420"
pipeline=(filesrc location="$work/frames.i420" ! rawvideoparse width=768 height=576 format=i420 framerate=10/1 !
  segpreproc ! ffnetinfer model="$root/models/selfie_segmentation.onnx" ! segpostproc mode=mask ! filesink)
echo "== Running the aarch64 plugin under qemu-aarch64 (ONNX Runtime $ort_version)"
(
  export QEMU_LD_PREFIX=$runroot GST_REGISTRY_FORK=no GST_REGISTRY_1_0=$work/registry.bin
  export GST_PLUGIN_SYSTEM_PATH_1_0=$runroot/usr/lib/aarch64-linux-gnu/gstreamer-1.0
  export GST_PLUGIN_PATH=$work/plugins ORT_DYLIB_PATH=$ort_lib
  qemu-aarch64 "$runroot/usr/bin/gst-launch-1.0" -q "${pipeline[@]}" location="$work/arm64.gray"
)
gst-launch-1.0 -q "${pipeline[@]}" location="$work/host.gray"
python3 - "$work/arm64.gray" "$work/host.gray" <<'PY'
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
if not a or len(a) != len(b):
    sys.exit(f"qemu check: FAIL — mask sizes {len(a)} (arm64) and {len(b)} (host)")
diff = sum(x != y for x, y in zip(a, b))
agree = 1 - diff / len(a)
print(f"arm64 vs host masks, 10 frames of vtest.avi: {diff} of {len(a)} pixels differ ({100 * agree:.4f}% agree)")
sys.exit(0 if agree >= 0.999 else "qemu check: FAIL — below 99.9% agreement")
PY
echo "qemu check: PASS — the aarch64 plugin segments like this machine's build"
