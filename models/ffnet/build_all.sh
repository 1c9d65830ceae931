#!/usr/bin/env bash
# Build every model artifact into out/models/ and regenerate the measured table of
# models/README.md (`make models` runs this).
#
#   models/ffnet/build_all.sh                      # everything, untrained FFNet weights
#   models/ffnet/build_all.sh --weights-dir DIR    # official checkpoints (*.pth) from DIR
#   models/ffnet/build_all.sh --variants ffnet_40s --no-selfie --no-readme   # a subset
#
# 1. makes (once) the virtualenv out/venv-models from models/requirements-ffnet.txt
#    (FFNET_VENV overrides the place; FFNET_TORCH_INDEX=https://download.pytorch.org/whl/cpu
#    takes torch's CPU-only wheel where that index is reachable);
# 2. builds segtool (cargo build --release -p segtool) so that latency is measured through
#    ffnetinfer's own session code; without cargo/segtool it falls back to Python
#    onnxruntime and the table says so;
# 3. runs models/ffnet/build_all.py with the arguments given here.
set -euo pipefail

START=$(date +%s.%N)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${FFNET_VENV:-$REPO/out/venv-models}
REQ=$REPO/models/requirements-ffnet.txt
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.requirements-ffnet.txt

if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$STAMP"; then
  echo "== virtualenv $VENV from models/requirements-ffnet.txt (torch pulls ~4 GB of CUDA wheels from PyPI; once)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  extra=()
  if [ -n "${FFNET_TORCH_INDEX:-}" ]; then extra=(--extra-index-url "$FFNET_TORCH_INDEX"); fi
  "$VENV/bin/python" -m pip install -q "${extra[@]}" -r "$REQ"
  cp "$REQ" "$STAMP"
else
  echo "== virtualenv $VENV is up to date"
fi

if [ -z "${SEGTOOL:-}" ] && [ -f "$REPO/segtool/Cargo.toml" ]; then
  CARGO=${CARGO:-cargo}
  if ! command -v "$CARGO" >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    CARGO=$HOME/.cargo/bin/cargo
  fi
  if command -v "$CARGO" >/dev/null 2>&1; then
    echo "== cargo build --release -p segtool"
    (cd "$REPO" && "$CARGO" build --release -q -p segtool) ||
      echo "warning: segtool did not build; latency falls back to Python onnxruntime (labelled in the table)"
  else
    echo "warning: no cargo; latency falls back to Python onnxruntime (labelled in the table)"
  fi
fi

export FFNET_BUILD_START=$START
"$VENV/bin/python" "$REPO/models/ffnet/build_all.py" "$@"
# The model tooling's own tests, every time (make test runs them only where this venv exists).
echo "== pytest models/tests"
"$VENV/bin/python" -m pytest "$REPO/models/tests" -q
END=$(date +%s.%N)
echo "== build_all.sh: $(awk -v a="$START" -v b="$END" 'BEGIN{printf "%.0f", b-a}') s in all"
