# ffnetseg — the two commands a user needs:
#   make demo   install what is missing, build, install the plugin, segment a real video
#   make test   the same set-up, then the whole test suite
#
# Installs (per user, no root needed except for apt):
#   ~/.local/share/gstreamer-1.0/plugins/libgstffnetseg.so   (GStreamer finds it by default)
#   ~/.local/lib/ffnetseg/libonnxruntime.so                   (the plugin finds it by default)

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PYTHON      := $(VENV)/bin/python
CARGO       ?= cargo
PLUGIN_DIR  := $(HOME)/.local/share/gstreamer-1.0/plugins
ORT_DIR     := $(HOME)/.local/lib/ffnetseg
PLUGIN_SO   := target/release/libgstffnetseg.so
MEDIA       := /usr/share/doc/opencv-doc/examples/data
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RUST_MIN    := 1.92

APT_PACKAGES := build-essential pkg-config curl ca-certificates clang libclang-dev \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav libopencv-dev opencv-doc \
	python3 python3-venv python3-pip python3-gi gir1.2-gst-plugins-base-1.0 meson ninja-build \
	pocl-opencl-icd ocl-icd-libopencl1

.PHONY: help deps rust venv build install demo test bench models lint golden pictures cross-aarch64 elements-doc clean uninstall packages packages-check packages-lint packaging-tools swupdate-check analytics-check

help:
	@echo "make demo    install, build, and segment a real video (out/demo/)"
	@echo "make test    install, build, and run the whole test suite"
	@echo "make bench   benchmarks against peers (writes BENCHMARKS.md)"
	@echo "make models  FFNet family + quantized models into out/models (models/README.md)"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make cross-aarch64  build the plugin for arm64 boards (docs/cross-compile.md)"
	@echo "make packages  Debian packages for amd64 and arm64 boards (docs/delivery.md)"
	@echo "make packages-check  install them into clean Debian 12 roots and compare masks"
	@echo "make swupdate-check  a signed SWUpdate bundle delivers a model to a playing pipeline"
	@echo "make golden  regenerate the golden masks with the Python reference"
	@echo "make pictures  regenerate the README pictures from real frames"
	@echo "make uninstall  remove the per-user plugin and ONNX Runtime copies"
	@echo "make analytics-check  the analytics feature on GStreamer 1.26 in a Debian 13 root (docs/analytics.md)"

# Debian/Ubuntu packages: installs only those of $(1) that are missing.
define apt_install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "System packages: all present"; fi
endef

deps:
	$(call apt_install_missing,$(APT_PACKAGES))

# Rust ≥ $(RUST_MIN): Debian's rustc is older, so rustup provides it when missing.
rust:
	@if command -v $(CARGO) >/dev/null 2>&1 && \
	   [ "$$(printf '%s\n' $(RUST_MIN) $$(rustc --version | cut -d' ' -f2) | sort -V | head -1)" = "$(RUST_MIN)" ]; then \
	  echo "Rust: $$(rustc --version)"; \
	elif [ -x "$$HOME/.cargo/bin/cargo" ]; then \
	  echo "Rust: using $$HOME/.cargo/bin (add it to PATH)"; \
	else \
	  echo "Installing Rust with rustup (Rust >= $(RUST_MIN) is needed)"; \
	  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; \
	fi

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

build: deps rust
	PATH="$$HOME/.cargo/bin:$$PATH" $(CARGO) build --release --workspace

# The QNN wheel's libQnnHtp.so finds its own libc++ through RPATH $ORIGIN/../onnxruntime_qnn.libs:
# without that folder the plugin registers, but every node silently runs on the CPU.
install: build venv
	mkdir -p $(PLUGIN_DIR) $(ORT_DIR)
	install -m 0644 $(PLUGIN_SO) $(PLUGIN_DIR)/
	@lib=$$(ls $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* | head -1); \
	  install -m 0644 $$lib $(ORT_DIR)/libonnxruntime.so; \
	  for f in $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime_providers_*.so; do \
	    [ -e "$$f" ] && install -m 0644 $$f $(ORT_DIR)/; done; \
	  qnn=$$(ls -d $(VENV)/lib/python3*/site-packages/onnxruntime_qnn 2>/dev/null | head -1); \
	  if [ -n "$$qnn" ]; then mkdir -p $(ORT_DIR)/qnn && install -m 0644 $$qnn/*.so $(ORT_DIR)/qnn/; \
	    install -m 0644 $$qnn/build_and_package_info.py $$qnn-*.dist-info/METADATA $(ORT_DIR)/qnn/; \
	    if [ -d "$$qnn.libs" ]; then mkdir -p $(ORT_DIR)/onnxruntime_qnn.libs && \
	      install -m 0644 $$qnn.libs/*.so* $(ORT_DIR)/onnxruntime_qnn.libs/; fi; \
	    if ldd $(ORT_DIR)/qnn/libQnnHtp.so | grep 'not found'; then \
	      echo "$(ORT_DIR)/qnn/libQnnHtp.so misses the libraries above"; exit 1; fi; \
	    echo "Installed the QNN plugin execution provider into $(ORT_DIR)/qnn"; fi; \
	  echo "Installed $(PLUGIN_DIR)/libgstffnetseg.so and $(ORT_DIR)/libonnxruntime.so ($$(basename $$lib))"
	@gst-inspect-1.0 ffnetseg >/dev/null && echo "gst-inspect-1.0 finds the ffnetseg plugin"

demo: install
	pipelines/demo.sh

test: install
	PATH="$$HOME/.cargo/bin:$$PATH" $(CARGO) test --release --workspace
	pipelines/check-pipelines.sh
	docs/gen-elements-md.sh --check
	@# The model tooling's tests need torch (several GB): they run where `make models` installed it.
	@if [ -x out/venv-models/bin/python ]; then out/venv-models/bin/python -m pytest models/tests -q; \
	else echo "models/tests: skipped here (torch is installed by make models into out/venv-models)"; fi

# FFNet family (export, W8A8/W8A16 quantization, validation, latency) into out/models,
# and models/README.md's table. Installs torch into out/venv-models (several GB).
models: install
	models/ffnet/build_all.sh

# Benchmarks as ratios against peers measured in the same run; writes BENCHMARKS.md.
bench: install
	pipelines/bench.sh

# arm64 build of the plugin from a Debian sysroot (docs/cross-compile.md).
cross-aarch64: rust
	PATH="$$HOME/.cargo/bin:$$PATH" docs/cross-aarch64.sh

# Debian packages for boards (docs/delivery.md): plugin, tools, ONNX Runtime, QNN EP per
# Hexagon version, models, for amd64 and arm64 (cross build) → target/packages; then lintian.
PACKAGING_TOOLS := dpkg-dev mmdebstrap lintian qemu-user qemu-user-static gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
packaging-tools:
	$(call apt_install_missing,$(PACKAGING_TOOLS))

packages: deps rust venv packaging-tools
	PATH="$$HOME/.cargo/bin:$$PATH" plugins/packaging/build-debs.sh --arch all
	$(MAKE) --no-print-directory packages-lint

packages-lint:
	lintian --tag-display-limit 0 $${CARGO_TARGET_DIR:-target}/packages/*.deb && echo "lintian: clean (overrides: plugins/packaging/lintian/)"

# SWUpdate delivers a signed model bundle (plugins/packaging/swupdate/make-model-swu.sh) to a
# playing pipeline (docs/delivery.md). Not in make test: Debian's swupdate package installs
# and enables a systemd daemon, which a developer's machine should not get from a test run.
swupdate-check: build venv
	$(call apt_install_missing,swupdate cpio openssl)
	PATH="$$HOME/.cargo/bin:$$PATH" $(CARGO) test --release -p ffnetseg-tests --test ota -- --ignored swupdate --nocapture

# The packages in clean Debian 12 roots (amd64: apt install inside, masks byte-identical to the
# development build; arm64: under qemu-aarch64). Needs the Debian archive, not PyPI.
packages-check: packaging-tools
	$(SUDO) tests/packaging/check-packages.sh --arch amd64
	$(SUDO) tests/packaging/check-packages.sh --arch arm64 --frames 10

# GStreamer's standard analytics metadata (cargo feature analytics, GStreamer >= 1.26): built
# and read back through GStreamer's own API in a Debian 13 root (tests/analytics/, root needed
# for mmdebstrap and chroot; docs/analytics.md). Needs the Debian archive.
analytics-check: rust venv
	$(SUDO) tests/analytics/check.sh

# docs/elements.md from gst-inspect-1.0 of the installed plugin.
elements-doc: install
	docs/gen-elements-md.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# README pictures, from real frames through the installed plugin.
pictures: install
	pipelines/snapshots.sh $(MEDIA)/messi5.jpg docs/images/messi5 0
	pipelines/snapshots.sh $(MEDIA)/vtest.avi docs/images/vtest 200
	gst-launch-1.0 -q filesrc location=$(MEDIA)/messi5.jpg ! jpegdec ! videoconvert ! segpreproc ! \
	  ffnetinfer model=models/test_ffnet_tiny.onnx ! segpostproc mode=classes opacity=0.6 ! \
	  videoconvert ! pngenc ! filesink location=docs/images/messi5_ffnet_tiny_classes.png

golden: venv
	$(PYTHON) tests/reference/make_golden.py

uninstall:
	rm -f $(PLUGIN_DIR)/libgstffnetseg.so
	rm -rf $(ORT_DIR)

clean:
	$(CARGO) clean
	rm -rf out
