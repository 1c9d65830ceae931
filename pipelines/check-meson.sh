#!/usr/bin/env bash
# Checks the meson build the way a packager uses it: meson setup / compile / install into a
# temporary prefix, then loads the installed plugin from that prefix only (GST_PLUGIN_PATH,
# a private registry, and no ~/.local/share/gstreamer-1.0 copy) and runs the elements.
# Cargo reuses the checkout's target/ (meson's default), so after `make build` nothing is
# compiled again. Prints PASS or FAIL and exits accordingly.
#   pipelines/check-meson.sh [--keep]   (--keep leaves the build and prefix folders)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
keep=0
case "${1:-}" in
  --keep) keep=1 ;;
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
esac
export PATH="$PATH:$HOME/.cargo/bin"
fail() { echo "meson check: FAIL — $*"; exit 1; }
for tool in meson ninja gst-inspect-1.0 gst-launch-1.0 pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (apt-get install meson ninja-build)"
done

work=$(mktemp -d /tmp/ffnetseg-meson.XXXXXX)
build=$work/build; prefix=$work/prefix
if [ "$keep" = 1 ]; then echo "keeping $work"; else trap 'rm -rf "$work"' EXIT; fi
log=$work/log

step() {
  local what=$1; shift
  echo "== $what"
  if ! "$@" >"$log" 2>&1; then
    tail -30 "$log"
    fail "$what"
  fi
}
step "meson setup (prefix $prefix)" meson setup "$build" "$root" --prefix="$prefix"
step "meson compile" meson compile -C "$build"
step "meson install" meson install -C "$build"

# The GStreamer plugin dir of the prefix: pkg-config's pluginsdir relative to GStreamer's
# own prefix (Debian: lib/x86_64-linux-gnu/gstreamer-1.0), under ours.
gst_prefix=$(pkg-config --variable=prefix gstreamer-1.0)
system_plugins=$(pkg-config --variable=pluginsdir gstreamer-1.0)
plugindir=$prefix/${system_plugins#"$gst_prefix"/}
so=$plugindir/libgstffnetseg.so
[ -f "$so" ] || fail "$so was not installed (installed: $(cd "$prefix" && find . -type f | tr '\n' ' '))"
echo "installed $so"
model=$prefix/share/ffnetseg/models/selfie_segmentation.onnx
[ -f "$model" ] || fail "$model was not installed"

# Only the prefix's copy: a private registry, and the system path without the per-user dir.
export GST_REGISTRY_1_0=$work/registry.bin
export GST_PLUGIN_PATH=$plugindir
export GST_PLUGIN_SYSTEM_PATH_1_0=$system_plugins
loaded=$(gst-inspect-1.0 ffnetseg 2>&1 | sed -n 's/^ *Filename *//p')
[ "$loaded" = "$so" ] || fail "gst-inspect-1.0 ffnetseg loads '${loaded:-nothing}', not $so"
for element in segpreproc ffnetinfer segpostproc; do
  gst-inspect-1.0 "$element" >"$log" 2>&1 || { tail -20 "$log"; fail "gst-inspect-1.0 $element"; }
  echo "gst-inspect-1.0 $element: $(sed -n 's/^ *Long-name *//p' "$log")"
done
step "pipeline with the installed plugin and model" gst-launch-1.0 -q videotestsrc num-buffers=10 ! \
  video/x-raw,format=NV12,width=320,height=240 ! segpreproc ! ffnetinfer model="$model" ! \
  segpostproc mode=overlay ! fakesink
unset GST_REGISTRY_1_0 GST_PLUGIN_PATH GST_PLUGIN_SYSTEM_PATH_1_0
step "meson test" meson test -C "$build"
echo "meson check: PASS ($so)"
