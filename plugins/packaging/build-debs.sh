#!/usr/bin/env bash
# Builds ffnetseg's Debian packages (docs/delivery.md), split by compute unit so that a board
# downloads only what it uses:
#
#   ffnetseg                 plugin (segpreproc, ffnetinfer, segpostproc)     amd64, arm64
#   ffnetseg-tools           segtool (inspect, profile, validate models)      amd64
#   ffnetseg-onnxruntime     ONNX Runtime for the CPU (PyPI onnxruntime wheel) amd64, arm64
#   ffnetseg-qnn             QNN plugin EP + HTP CPU-side libraries           arm64
#   ffnetseg-qnn-htp-v<NN>   Hexagon v68/v69/v73/v75/v79/v81 stub + skel      arm64
#   ffnetseg-qnn-gpu         QNN Adreno GPU backend (libQnnGpu.so)            arm64
#   ffnetseg-qnn-sim         QNN plugin EP + x86 HTP simulator (CI, AOT)      amd64
#   ffnetseg-models          selfie segmentation FP32                         all
#   ffnetseg-models-npu      its W8A16 quantized-I/O variant (NPU)             all
#
#   plugins/packaging/build-debs.sh [--arch amd64|arm64|all] [--out DIR] [--no-build] [--no-sim]
#
# Files go where ffnetinfer looks without environment variables: the plugin in GStreamer's
# system folder /usr/lib/<triplet>/gstreamer-1.0/, ONNX Runtime as /usr/lib/ffnetseg/libonnxruntime.so,
# the QNN EP in /usr/lib/ffnetseg/qnn/. Dependencies on Debian's libraries come from
# dpkg-shlibdeps (for arm64: against the arm64 packages' symbols files, see arm64_admindir).
# Output: $CARGO_TARGET_DIR/packages (default target/packages).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
T=${CARGO_TARGET_DIR:-$root/target}
arches="amd64 arm64"; out=""; build=1; sim=1
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arches=$2; [ "$arches" = all ] && arches="amd64 arm64"; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-sim) sim=0; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=${out:-$T/packages}
work=$T/packaging
mkdir -p "$out" "$work/wheels"
export PATH="$PATH:$HOME/.cargo/bin"
# Reproducible: file dates and the changelog date are the last commit's.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct)}

# Versions. The plugin's is Cargo's; ONNX Runtime and QNN are the wheels' (the QNN 2.7.0 wheel
# requires onnxruntime >= 1.24.2); the plugin needs ONNX Runtime >= 1.23 (src/inference/runtime.rs).
PLUGIN_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
ORT_VERSION=1.32.0
QNN_VERSION=2.7.0
MODELS_VERSION=$PLUGIN_VERSION
ORT_MIN_PLUGIN=1.23
ORT_MIN_QNN=1.24.2
HTP_ARCHES="68 69 73 75 79 81"
REV=1
# Set FFNETSEG_MAINTAINER to the vendor's name and address when shipping the packages.
MAINTAINER=${FFNETSEG_MAINTAINER:-"ffnetseg developers <ffnetseg@example.org>"}
HOMEPAGE_NOTE="ffnetseg: GStreamer elements for on-device video segmentation"

wheel() {  # wheel NAME VERSION PLATFORM → path of the downloaded wheel
  local name=$1 version=$2 platform=$3 f
  f=$(ls "$work/wheels/${name//-/_}-$version-"*"$platform"*.whl 2>/dev/null | head -1 || true)
  if [ -z "$f" ]; then
    local pip=$root/.venv/bin/pip; [ -x "$pip" ] || pip="python3 -m pip"
    $pip download -q --no-deps --only-binary=:all: --platform "$platform" --python-version 3.11 \
      --dest "$work/wheels" "$name==$version" >&2
    f=$(ls "$work/wheels/${name//-/_}-$version-"*"$platform"*.whl | head -1)
  fi
  echo "$f"
}

unzip_wheel() {  # unzip_wheel WHEEL DIR
  rm -rf "$2"; mkdir -p "$2"; python3 -m zipfile -e "$1" "$2"
}

# --- arm64: a dpkg database for dpkg-shlibdeps ------------------------------------------
# dpkg-shlibdeps maps each NEEDED library to the package that ships it (dpkg-query --search)
# and reads that package's symbols/shlibs file. For arm64 binaries on an amd64 machine the
# host database has no arm64 packages, so this extracts the arm64 runtime packages that own
# the NEEDED sonames (the same package names as on amd64, found with the host's dpkg -S and
# checked against the arm64 packages' file lists) and builds a private database from their
# .deb files: status, <pkg>.list (paths under the extracted root), <pkg>.symbols/.shlibs.
arm64_admindir() {  # arm64_admindir ELF... → sets SHROOT and ADMIN
  SHROOT=$work/shlibs-root-arm64; ADMIN=$work/shlibs-admin-arm64
  local pkgs="" lib p
  for lib in $(for f in "$@"; do readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; done | sort -u); do
    p=$(dpkg -S "*/x86_64-linux-gnu/$lib" 2>/dev/null | head -1 | cut -d: -f1 || true)
    [ -n "$p" ] && pkgs="$pkgs,$p"
  done
  # Re-extract only when a package is missing; then extract the union (one root for all calls).
  local have="" missing=0
  [ -e "$SHROOT/.complete" ] && have=$(cat "$SHROOT/.complete")
  for p in ${pkgs//,/ }; do grep -qx "$p" <<<"${have//,/$'\n'}" || missing=1; done
  pkgs=$(tr ',' '\n' <<<"$have$pkgs" | grep -v '^$' | sort -u | paste -sd,)
  if [ "$missing" = 1 ]; then
    echo "== Extracting the arm64 runtime packages for dpkg-shlibdeps: $pkgs" >&2
    rm -rf "$SHROOT" "$ADMIN"
    mmdebstrap --quiet --variant=extract --architectures=arm64 --mode=root --skip=cleanup/apt/cache \
      --include="$pkgs" bookworm "$SHROOT" \
      "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian-security bookworm-security main" >&2
    mkdir -p "$ADMIN/info" "$ADMIN/updates"; echo 1 > "$ADMIN/info/format"  # multiarch info names (pkg:arm64.list)
    : > "$ADMIN/status"; echo arm64 > "$ADMIN/arch"
    local deb c n
    for deb in "$SHROOT"/var/cache/apt/archives/*.deb; do
      c=$(mktemp -d); dpkg-deb -e "$deb" "$c"
      n=$(sed -n 's/^Package: //p' "$c/control")
      grep -q '^Multi-Arch: same' "$c/control" && n="$n:arm64"
      { sed '/^Description:/q' "$c/control"; echo "Status: install ok installed"; echo; } >> "$ADMIN/status"
      # both /lib/… and /usr/lib/… spellings: bookworm packages ship /lib, the root is merged-/usr
      dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^$' |
        sed -e "s|^|$SHROOT|" -e "p; s|^$SHROOT/lib/|$SHROOT/usr/lib/|" | sort -u > "$ADMIN/info/$n.list"
      for x in symbols shlibs; do [ -f "$c/$x" ] && cp "$c/$x" "$ADMIN/info/$n.$x"; done
      rm -rf "$c"
    done
    echo "$pkgs" > "$SHROOT/.complete"
  fi
}

shlibdeps() {  # shlibdeps ARCH ELF... → the Depends list dpkg-shlibdeps derives
  local arch=$1; shift
  local d; d=$(mktemp -d)
  mkdir -p "$d/debian"; printf 'Source: ffnetseg\n\nPackage: ffnetseg\nArchitecture: any\n' > "$d/debian/control"
  local args=(-O --ignore-missing-info)
  if [ "$arch" = arm64 ]; then
    arm64_admindir "$@"
    args+=(--admindir="$ADMIN" -l"$SHROOT/usr/lib/aarch64-linux-gnu" -l"$SHROOT/lib/aarch64-linux-gnu")
  fi
  # libcdsprpc.so (the Hexagon stubs' FastRPC library) comes from the board's BSP, not Debian:
  # dpkg-shlibdeps warns that it cannot find it; that is expected (docs/delivery.md).
  local abs=(); for f in "$@"; do abs+=("$(readlink -f "$f")"); done
  (cd "$d" && DEB_HOST_ARCH=$arch dpkg-shlibdeps "${args[@]}" "${abs[@]}" 2> "$d/err") |
    sed -n 's/^shlibs:Depends=//p'
  grep -v "libcdsprpc.so\|useless dependency\|binaries to analyze should already be\|symbol .* used by .* found in none" "$d/err" >&2 || true
  rm -rf "$d"
}

# --- one package --------------------------------------------------------------------------
# stage_new NAME → $S, a fresh staging root; finish_pkg NAME VERSION ARCH DEPENDS EXTRA DESCRIPTION
stage_new() { S=$work/stage/$1_$2; rm -rf "$S"; mkdir -p "$S/DEBIAN" "$S/usr/share/doc/$1"; }

changelog() {  # changelog NAME VERSION → /usr/share/doc/NAME/changelog.Debian.gz
  local date; date=$(date -R -d "@$SOURCE_DATE_EPOCH")
  printf '%s (%s) unstable; urgency=medium\n\n  * Built by plugins/packaging/build-debs.sh from the ffnetseg repository.\n\n -- %s  %s\n' \
    "$1" "$2" "$MAINTAINER" "$date" | gzip -9n > "$S/usr/share/doc/$1/changelog.Debian.gz"
}

finish_pkg() {  # finish_pkg NAME VERSION ARCH "Depends" "extra control lines" "Description"
  local name=$1 version=$2 arch=$3 depends=$4 extra=$5 desc=$6
  changelog "$name" "$version"
  # lintian overrides, each with its reason: common + the package's own (htp-v<NN> share one).
  local ov=$S/usr/share/lintian/overrides/$name own=$here/lintian/${name%-v[0-9][0-9]}
  mkdir -p "$(dirname "$ov")"; cat "$here/lintian/common" > "$ov"
  [ -f "$own" ] && cat "$own" >> "$ov"
  chmod 0644 "$ov"
  find "$S" -type d -exec chmod 0755 {} +
  (cd "$S" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0r md5sum) > "$S/DEBIAN/md5sums"
  local size; size=$(du -sk --exclude=DEBIAN "$S" | cut -f1)
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $MAINTAINER"
    echo "Installed-Size: $size"
    [ -n "$depends" ] && echo "Depends: $depends"
    [ -n "$extra" ] && printf '%s\n' "$extra"
    grep -q '^Section:' <<<"$extra" || echo "Section: libs"
    echo "Priority: optional"
    echo "Description: $desc"
  } > "$S/DEBIAN/control"
  local deb=$out/${name}_${version}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$S" "$deb" >/dev/null
  printf '%-60s %8s KiB download, %8s KiB installed\n' "$(basename "$deb")" "$(( $(stat -c %s "$deb") / 1024 ))" "$size"
}

copyright_head() {  # copyright_head NAME UPSTREAM-NAME SOURCE
  printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: %s\nSource: %s\n\n' "$2" "$3" \
    > "$S/usr/share/doc/$1/copyright"
}

mit_text() {
  cat <<'EOF'
 Permission is hereby granted, free of charge, to any person obtaining a copy of this
 software and associated documentation files (the "Software"), to deal in the Software
 without restriction, including without limitation the rights to use, copy, modify, merge,
 publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
 to whom the Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
 INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
 PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
 FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
 DEALINGS IN THE SOFTWARE.
EOF
}

rust_copyright() {  # rust_copyright NAME TRIPLE CRATE... : the workspace licence + linked crates
  local name=$1 triple=$2; shift 2
  copyright_head "$name" ffnetseg "the ffnetseg repository (Cargo workspace)"
  {
    printf 'Files: *\nCopyright: 2025-2026 ffnetseg contributors\nLicense: MIT or Apache-2.0\n\n'
    printf 'Files: statically linked Rust crates\nCopyright: (c) the authors of each crate (see crates.io)\n'
    printf 'License: various (per crate, below)\nComment: The binaries link these crates from crates.io statically:\n'
    (cd "$root" && "$here/crate-licenses.py" "$triple" "$@")
    printf '\nLicense: MIT\n'; mit_text
    printf '\nLicense: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n'
    printf '\nLicense: various\n Crates under ISC, Unicode-3.0, Unlicense and BSD licences are listed above with\n their SPDX expressions; their texts are in each crate'"'"'s source on crates.io.\n'
  } >> "$S/usr/share/doc/$name/copyright"
}

triplet_of() { [ "$1" = arm64 ] && echo aarch64-linux-gnu || echo x86_64-linux-gnu; }
rust_target_of() { [ "$1" = arm64 ] && echo aarch64-unknown-linux-gnu || echo x86_64-unknown-linux-gnu; }
strip_for() { [ "$1" = arm64 ] && echo aarch64-linux-gnu-strip || echo strip; }

# --- build the binaries -------------------------------------------------------------------
for arch in $arches; do
  if [ "$build" = 1 ]; then
    if [ "$arch" = amd64 ]; then
      echo "== cargo build --release -p gstffnetseg -p segtool (amd64)"
      cargo build --manifest-path "$root/Cargo.toml" --release --target-dir "$T" -p gstffnetseg -p segtool
    else
      echo "== docs/cross-aarch64.sh (arm64 plugin)"
      "$root/docs/cross-aarch64.sh" --target-dir "$T"
    fi
  fi
done

for arch in $arches; do
  trip=$(triplet_of "$arch"); rtarget=$(rust_target_of "$arch"); strip=$(strip_for "$arch")
  if [ "$arch" = amd64 ]; then rel=$T/release; else rel=$T/$rtarget/release; fi
  echo "== $arch packages → $out"

  # ffnetseg: the plugin. Breaks keeps apt from pairing it with a QNN EP outside the 2.x series
  # it drives (the same range ffnetinfer checks at run time: src/inference/qnn_ep_version.rs).
  stage_new ffnetseg "$arch"
  install -Dm0644 "$rel/libgstffnetseg.so" "$S/usr/lib/$trip/gstreamer-1.0/libgstffnetseg.so"
  $strip --strip-unneeded --remove-section=.comment --remove-section=.note "$S/usr/lib/$trip/gstreamer-1.0/libgstffnetseg.so"
  rust_copyright ffnetseg "$rtarget" gstffnetseg
  deps=$(shlibdeps "$arch" "$S/usr/lib/$trip/gstreamer-1.0/libgstffnetseg.so")
  finish_pkg ffnetseg "$PLUGIN_VERSION-$REV" "$arch" "$deps, ffnetseg-onnxruntime (>= $ORT_MIN_PLUGIN)" \
    "$(printf 'Recommends: ffnetseg-models, gstreamer1.0-plugins-base\nSuggests: ffnetseg-tools, ffnetseg-qnn, gstreamer1.0-tools\nBreaks: ffnetseg-qnn (<< 2~), ffnetseg-qnn (>= 3~), ffnetseg-qnn-sim (<< 2~), ffnetseg-qnn-sim (>= 3~)')" \
    "$(printf '%s\n %s\n .\n %s\n %s\n %s' "GStreamer elements for on-device video segmentation" \
      "segpreproc, ffnetinfer, segpostproc: a camera frame in; a mask, overlay," \
      "blurred background or class map out. ffnetinfer loads ONNX Runtime at run" \
      "time from /usr/lib/ffnetseg (package ffnetseg-onnxruntime). The Qualcomm NPU" \
      "needs ffnetseg-qnn and the ffnetseg-qnn-htp-v<NN> package of the SoC.")"

  # ffnetseg-tools: segtool (amd64 only: the arm64 sysroot has no OpenCV videoio, see docs/delivery.md).
  if [ -x "$rel/segtool" ]; then
    stage_new ffnetseg-tools "$arch"
    install -Dm0755 "$rel/segtool" "$S/usr/bin/segtool"
    $strip --strip-unneeded --remove-section=.comment --remove-section=.note "$S/usr/bin/segtool"
    rust_copyright ffnetseg-tools "$rtarget" segtool
    deps=$(shlibdeps "$arch" "$S/usr/bin/segtool")
    finish_pkg ffnetseg-tools "$PLUGIN_VERSION-$REV" "$arch" "$deps, ffnetseg-onnxruntime (>= $ORT_MIN_PLUGIN)" "Section: utils" \
      "$(printf '%s\n %s\n %s' "segtool: inspect, profile and validate ffnetseg models" \
        "Prints a model's contract, profiles it per execution provider (where each" \
        "node runs), and validates masks against references.")"
  else
    echo "   (no $rel/segtool: ffnetseg-tools not built for $arch)"
  fi

  # ffnetseg-onnxruntime: the CPU ONNX Runtime from the PyPI wheel.
  if [ "$arch" = arm64 ]; then plat=manylinux_2_28_aarch64; else plat=manylinux_2_28_x86_64; fi
  w=$(wheel onnxruntime "$ORT_VERSION" "$plat"); x=$work/x/ort-$arch; unzip_wheel "$w" "$x"
  stage_new ffnetseg-onnxruntime "$arch"
  d=$S/usr/lib/ffnetseg; mkdir -p "$d"
  install -m0644 "$x/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$d/"
  ln -s "libonnxruntime.so.$ORT_VERSION" "$d/libonnxruntime.so"
  install -m0644 "$x/onnxruntime/capi/libonnxruntime_providers_shared.so" "$d/"
  dd=$S/usr/share/doc/ffnetseg-onnxruntime
  install -m0644 "$x/onnxruntime/ThirdPartyNotices.txt" "$x/onnxruntime/Privacy.md" "$dd/"
  gzip -9n "$dd/ThirdPartyNotices.txt"
  copyright_head ffnetseg-onnxruntime "ONNX Runtime" "https://github.com/microsoft/onnxruntime (PyPI wheel $(basename "$w"))"
  { printf 'Files: *\nCopyright: (c) Microsoft Corporation\nLicense: MIT\nComment: LICENSE of the wheel, verbatim:\n'
    sed 's/^$/./; s/^/ /' "$x/onnxruntime/LICENSE"
    printf '\nFiles: third-party components linked into libonnxruntime.so\nCopyright: (c) their authors, see ThirdPartyNotices.txt.gz\n'
    printf 'License: various\n The notices of the third-party components shipped with ONNX Runtime are in\n /usr/share/doc/ffnetseg-onnxruntime/ThirdPartyNotices.txt.gz (from the wheel), its\n privacy statement in Privacy.md.\n'
    printf '\nLicense: MIT\n'; mit_text
  } >> "$dd/copyright"
  deps=$(shlibdeps "$arch" "$d/libonnxruntime.so.$ORT_VERSION" "$d/libonnxruntime_providers_shared.so")
  finish_pkg ffnetseg-onnxruntime "$ORT_VERSION-$REV" "$arch" "$deps" "" \
    "$(printf '%s\n %s\n %s\n %s' "ONNX Runtime $ORT_VERSION (CPU) for ffnetseg" \
      "libonnxruntime.so from the PyPI onnxruntime wheel, in /usr/lib/ffnetseg" \
      "where ffnetinfer loads it without environment variables. Private to" \
      "ffnetseg: not on the system loader path.")"

  # QNN: the plugin EP, its HTP libraries per Hexagon version, the GPU backend (arm64); the
  # x86-64 HTP simulator (amd64, for CI and ahead-of-time compilation, not for boards).
  if [ "$arch" = arm64 ] || [ "$sim" = 1 ]; then
    if [ "$arch" = arm64 ]; then plat=manylinux_2_34_aarch64; else plat=manylinux_2_35_x86_64; fi
    w=$(wheel onnxruntime-qnn "$QNN_VERSION" "$plat"); x=$work/x/qnn-$arch; unzip_wheel "$w" "$x"
    q=$x/onnxruntime_qnn
    qnn_copyright() {  # qnn_copyright NAME
      local dd=$S/usr/share/doc/$1
      install -m0644 "$q/Qualcomm_LICENSE.pdf" "$q/Privacy.md" "$dd/"
      install -m0644 "$q/ThirdPartyNotices.txt" "$dd/"; gzip -9n "$dd/ThirdPartyNotices.txt"
      copyright_head "$1" "onnxruntime-qnn" "https://pypi.org/project/onnxruntime-qnn/ (wheel $(basename "$w"))"
      { printf 'Files: usr/lib/ffnetseg/qnn/libonnxruntime_providers_qnn.so\nCopyright: (c) Microsoft Corporation, (c) Qualcomm Technologies, Inc.\nLicense: MIT\nComment: LICENSE of the wheel, verbatim:\n'
        sed 's/^$/./; s/^/ /' "$q/LICENSE"
        printf '\nFiles: usr/lib/ffnetseg/qnn/libQnn* usr/lib/ffnetseg/qnn/libHtpPrepare.so\nCopyright: (c) Qualcomm Technologies, Inc.\nLicense: Qualcomm-QAIRT\n'
        printf ' The QNN / QAIRT runtime libraries are distributed under Qualcomm'"'"'s licence,\n /usr/share/doc/%s/Qualcomm_LICENSE.pdf (from the wheel). Third-party notices:\n ThirdPartyNotices.txt.gz; privacy statement: Privacy.md.\n' "$1"
        printf '\nLicense: MIT\n'; mit_text
      } >> "$dd/copyright"
    }
    # The wheel's version files, beside the EP: ffnetinfer reads them to refuse an EP of
    # another series or one that needs a newer ONNX Runtime (src/inference/qnn_ep_version.rs).
    qnn_version_files() {  # qnn_version_files DIR
      install -m0644 "$q/build_and_package_info.py" "$1/"
      install -m0644 "$x/onnxruntime_qnn-$QNN_VERSION.dist-info/METADATA" "$1/"
    }
    if [ "$arch" = arm64 ]; then
      stage_new ffnetseg-qnn arm64; d=$S/usr/lib/ffnetseg/qnn; mkdir -p "$d"
      for f in libonnxruntime_providers_qnn.so libQnnHtp.so libQnnHtpPrepare.so libQnnSystem.so libQnnHtpNetRunExtensions.so; do
        install -m0644 "$q/$f" "$d/"
      done
      qnn_version_files "$d"
      qnn_copyright ffnetseg-qnn
      deps=$(shlibdeps arm64 "$d"/*.so)
      finish_pkg ffnetseg-qnn "$QNN_VERSION-$REV" arm64 "$deps, ffnetseg-onnxruntime (>= $ORT_MIN_QNN)" \
        "$(printf 'Suggests: %s' "$(for v in $HTP_ARCHES; do printf 'ffnetseg-qnn-htp-v%s | ' "$v"; done | sed 's/ | $//')")" \
        "$(printf '%s\n %s\n %s\n %s\n %s\n %s' "Qualcomm QNN execution provider for ffnetseg" \
          "The onnxruntime-qnn $QNN_VERSION plugin EP and the CPU side of the HTP backend," \
          "in /usr/lib/ffnetseg/qnn where ffnetinfer finds it. Install with it the" \
          "ffnetseg-qnn-htp-v<NN> package of the SoC's Hexagon version (v68: QCS6490," \
          "v73: QCS8550). The board's FastRPC (libcdsprpc.so, /dev/fastrpc-cdsp)" \
          "comes from its BSP.")"
      for v in $HTP_ARCHES; do
        stage_new "ffnetseg-qnn-htp-v$v" arm64; d=$S/usr/lib/ffnetseg/qnn; mkdir -p "$d"
        install -m0644 "$q/libQnnHtpV${v}Stub.so" "$q/libQnnHtpV${v}Skel.so" "$d/"
        qnn_copyright "ffnetseg-qnn-htp-v$v"
        deps=$(shlibdeps arm64 "$d/libQnnHtpV${v}Stub.so")
        finish_pkg "ffnetseg-qnn-htp-v$v" "$QNN_VERSION-$REV" arm64 "$deps, ffnetseg-qnn (= $QNN_VERSION-$REV)" "" \
          "$(printf '%s\n %s\n %s' "Hexagon v$v HTP libraries for ffnetseg's QNN EP" \
            "libQnnHtpV${v}Stub.so (CPU side, needs the board's libcdsprpc.so) and" \
            "libQnnHtpV${v}Skel.so (loaded by the DSP), from onnxruntime-qnn $QNN_VERSION.")"
      done
      stage_new ffnetseg-qnn-gpu arm64; d=$S/usr/lib/ffnetseg/qnn; mkdir -p "$d"
      install -m0644 "$q/libQnnGpu.so" "$d/"
      qnn_copyright ffnetseg-qnn-gpu
      deps=$(shlibdeps arm64 "$d/libQnnGpu.so")
      finish_pkg ffnetseg-qnn-gpu "$QNN_VERSION-$REV" arm64 "$deps, ffnetseg-qnn (= $QNN_VERSION-$REV)" "" \
        "$(printf '%s\n %s\n %s' "Qualcomm QNN Adreno GPU backend for ffnetseg" \
          "libQnnGpu.so, for ffnetinfer provider=qnn provider-options=backend_type=gpu;" \
          "uses the board's Adreno OpenCL driver. Not tested on hardware.")"
    else
      stage_new ffnetseg-qnn-sim amd64; d=$S/usr/lib/ffnetseg/qnn; mkdir -p "$d" "$S/usr/lib/ffnetseg/onnxruntime_qnn.libs"
      for f in libonnxruntime_providers_qnn.so libQnnHtp.so libHtpPrepare.so libQnnSystem.so; do install -m0644 "$q/$f" "$d/"; done
      qnn_version_files "$d"
      # libQnnHtp.so finds its libc++ through RPATH $ORIGIN/../onnxruntime_qnn.libs (as in make install).
      install -m0644 "$x"/onnxruntime_qnn.libs/* "$S/usr/lib/ffnetseg/onnxruntime_qnn.libs/"
      qnn_copyright ffnetseg-qnn-sim
      printf '\nFiles: usr/lib/ffnetseg/onnxruntime_qnn.libs/*\nCopyright: (c) the LLVM project contributors\nLicense: Apache-2.0 with LLVM exception\n libc++, libc++abi and libunwind bundled by the wheel (auditwheel); text in\n /usr/share/common-licenses/Apache-2.0 plus the LLVM exception.\n' \
        >> "$S/usr/share/doc/ffnetseg-qnn-sim/copyright"
      deps=$(shlibdeps amd64 "$d/libonnxruntime_providers_qnn.so" "$d/libQnnSystem.so")
      finish_pkg ffnetseg-qnn-sim "$QNN_VERSION-$REV" amd64 "$deps, ffnetseg-onnxruntime (>= $ORT_MIN_QNN)" "" \
        "$(printf '%s\n %s\n %s\n %s' "Qualcomm QNN EP with the x86-64 HTP simulator, for ffnetseg" \
          "The onnxruntime-qnn wheel's plugin EP and HTP simulator for x86-64: the" \
          "same registration and placement code as a board, slowly, for CI and" \
          "ahead-of-time compilation. Not for boards; provider=auto never picks it.")"
    fi
  fi
done

# Models (Architecture: all).
stage_new ffnetseg-models all; d=$S/usr/share/ffnetseg/models; mkdir -p "$d"
install -m0644 "$root/models/selfie_segmentation.onnx" "$d/"
install -m0644 "$root/models/selfie_segmentation.LICENSE.md" "$S/usr/share/doc/ffnetseg-models/"
models_copyright() {
  copyright_head "$1" "MediaPipe Selfie Segmentation (converted to ONNX)" "https://github.com/google-ai-edge/mediapipe"
  { printf 'Files: usr/share/ffnetseg/models/*\nCopyright: (c) The MediaPipe Authors (Google)\nLicense: Apache-2.0\nComment: Converted and modified by ffnetseg; origin, modifications and the full\n licence: /usr/share/doc/%s/selfie_segmentation.LICENSE.md\n' "$1"
    printf '\nLicense: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n'
  } >> "$S/usr/share/doc/$1/copyright"
}
models_copyright ffnetseg-models
finish_pkg ffnetseg-models "$MODELS_VERSION-$REV" all "" "Section: misc" \
  "$(printf '%s\n %s\n %s' "Segmentation models for ffnetseg: MediaPipe selfie (FP32)" \
    "selfie_segmentation.onnx (Apache-2.0) in /usr/share/ffnetseg/models, for" \
    "ffnetinfer model=/usr/share/ffnetseg/models/selfie_segmentation.onnx.")"
# The NPU recommendation: the shipped W8A16 selfie model with quantized I/O (wholly on the HTP).
npu_model=$root/models/selfie_segmentation_w8a16_qio.onnx
stage_new ffnetseg-models-npu all; d=$S/usr/share/ffnetseg/models; mkdir -p "$d"
install -m0644 "$npu_model" "$d/"
install -m0644 "$root/models/selfie_segmentation.LICENSE.md" "$S/usr/share/doc/ffnetseg-models-npu/"
models_copyright ffnetseg-models-npu
finish_pkg ffnetseg-models-npu "$MODELS_VERSION-$REV" all "" "Section: misc" \
  "$(printf '%s\n %s\n %s\n %s\n %s' "Quantized selfie segmentation model for the Qualcomm NPU" \
    "selfie_segmentation_w8a16_qio.onnx in /usr/share/ffnetseg/models: 8-bit" \
    "weights, 16-bit activations, quantized input and output, so every node runs" \
    "on the Hexagon HTP (v68 and newer). Use it with ffnetinfer provider=qnn" \
    "model=/usr/share/ffnetseg/models/selfie_segmentation_w8a16_qio.onnx.")"
