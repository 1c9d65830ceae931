# UNTESTED SKETCH — no Yocto build was possible where this was written. It shows the shape of
# a recipe for the ffnetseg GStreamer plugin in a Yocto / Qualcomm Linux image; expect to
# adjust names and versions to your layers. See docs/cross-compile.md, section 3.
#
# Needs: OE-core's cargo classes (Rust >= 1.92: scarthgap's Rust is older, so a newer
# meta-lts-mixins / meta-rust toolchain layer may be required), meta-clang (the opencv
# crate parses OpenCV's headers with libclang), meta-oe (opencv), GStreamer >= 1.22.
#
# Crate list: run `bitbake -c update_crates gst-plugin-ffnetseg` once; it writes
# gst-plugin-ffnetseg-crates.inc from Cargo.lock (class cargo-update-recipe-crates).

SUMMARY = "ffnetseg: on-device segmentation elements for GStreamer (segpreproc, ffnetinfer, segpostproc)"
HOMEPAGE = "https://example.invalid/ffnetseg"
LICENSE = "MIT | Apache-2.0"
# TODO: point at the repository's licence files once they exist; the checksums are placeholders.
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=1;endline=8;md5=00000000000000000000000000000000"

SRC_URI = "git://example.invalid/ffnetseg.git;protocol=https;branch=main"
SRCREV = "${AUTOREV}"
S = "${WORKDIR}/git"

inherit cargo cargo-update-recipe-crates pkgconfig
require ${BPN}-crates.inc

DEPENDS += " \
    gstreamer1.0 \
    gstreamer1.0-plugins-base \
    opencv \
    clang-native \
"

# Build only the plugin crate of the workspace.
CARGO_BUILD_FLAGS += "-p gstffnetseg --lib"

# The opencv crate: link core, imgproc and imgcodecs from the target sysroot, parse headers with the
# native libclang (see "Pitfalls" in docs/cross-compile.md).
export OPENCV_LINK_LIBS = "opencv_core,opencv_imgproc,opencv_imgcodecs"
export OPENCV_LINK_PATHS = "${STAGING_LIBDIR}"
export OPENCV_INCLUDE_PATHS = "${STAGING_INCDIR}/opencv4"
export OPENCV_DISABLE_PROBES = "pkg_config,cmake,vcpkg_cmake,vcpkg"
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"

# ONNX Runtime is not linked; the plugin dlopens it. Bake in where the image installs it
# (src/inference/runtime.rs: tried after the ort-library property and ORT_DYLIB_PATH).
FFNETSEG_ORT_LIBRARY ?= "${libdir}/libonnxruntime.so"
export FFNETSEG_ORT_LIBRARY

do_install() {
    install -d ${D}${libdir}/gstreamer-1.0
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/libgstffnetseg.so ${D}${libdir}/gstreamer-1.0/
    install -d ${D}${datadir}/ffnetseg/models
    install -m 0644 ${S}/models/selfie_segmentation.onnx ${S}/models/test_ffnet_tiny.onnx \
        ${S}/models/selfie_segmentation.LICENSE.md ${D}${datadir}/ffnetseg/models/
}

FILES:${PN} += "${libdir}/gstreamer-1.0/libgstffnetseg.so ${datadir}/ffnetseg"
# A plugin is a module, not a versioned library: keep the .so in the main package.
FILES_SOLIBSDEV = ""
INSANE_SKIP:${PN} += "dev-so"

# The runtime: your BSP's ONNX Runtime (a QNN-enabled one for the NPU). The name differs by
# layer (e.g. "onnxruntime"); without it ffnetinfer fails to start with a clear message.
RDEPENDS:${PN} += "gstreamer1.0-plugins-base"
RRECOMMENDS:${PN} += "onnxruntime"
