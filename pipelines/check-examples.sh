#!/usr/bin/env bash
# Runs the embedding examples on 10 frames of vtest.avi and checks what they print:
#   examples/rust-embed      (cargo run -p ffnetseg-embed-example; plugin linked statically)
#   examples/python/segment_mask.py  (Debian's /usr/bin/python3 + gi; the installed plugin)
#   examples/python/multi_camera.py  (three test sources, one shared instance)
# Each must print 10 frame lines with scores metadata from the CPU provider and a mean
# foreground (people in the street scene) between 0.5% and 50%. Called by check-pipelines.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
frames=10
pass=0; fail=0
cargo=${CARGO:-cargo}
command -v "$cargo" >/dev/null 2>&1 || cargo=$HOME/.cargo/bin/cargo

# check NAME OUTPUT: the output has $frames frame lines and a plausible mean foreground.
check() {
  local name=$1 out=$2 n mean
  n=$(grep -c '^frame ' <<<"$out" || true)
  mean=$(sed -n 's/.*mean foreground \([0-9.]*\)%.*/\1/p' <<<"$out" | tail -1)
  if [ "$n" -ne "$frames" ]; then
    echo "FAIL $name: $n frame lines, expected $frames"; echo "$out" | tail -20; fail=$((fail + 1))
  elif ! grep -q ' on cpu' <<<"$out"; then
    echo "FAIL $name: no 'on cpu' provider in the output"; echo "$out" | tail -20; fail=$((fail + 1))
  elif [ -z "$mean" ] || ! awk -v m="$mean" 'BEGIN { exit !(m >= 0.5 && m <= 50) }'; then
    echo "FAIL $name: mean foreground '${mean}%' is not in [0.5, 50]"; echo "$out" | tail -20; fail=$((fail + 1))
  else
    echo "ok   $name: $(tail -1 <<<"$out")"; pass=$((pass + 1))
  fi
}

# Rust: needs examples/rust-embed among the workspace members.
if (cd "$root" && "$cargo" metadata --no-deps --format-version 1 2>/dev/null) |
    grep -q '"name":"ffnetseg-embed-example"'; then
  if out=$(cd "$root" && "$cargo" run --quiet --release -p ffnetseg-embed-example -- --frames "$frames" 2>&1); then
    check "rust-embed (cargo run -p ffnetseg-embed-example)" "$out"
  else
    echo "FAIL rust-embed: cargo run failed"; echo "$out" | tail -20; fail=$((fail + 1))
  fi
else
  echo "FAIL rust-embed: ffnetseg-embed-example is not a workspace member (add \"examples/rust-embed\" to [workspace] members in Cargo.toml)"
  fail=$((fail + 1))
fi

# Python: Debian's python3-gi belongs to /usr/bin/python3, not to a pyenv or venv python.
if ! /usr/bin/python3 -c 'import gi; gi.require_version("GstVideo", "1.0"); from gi.repository import GstVideo' 2>/dev/null; then
  echo "FAIL python segment_mask.py: /usr/bin/python3 has no GStreamer gi bindings (apt-get install python3-gi gir1.2-gst-plugins-base-1.0)"
  fail=$((fail + 1))
elif out=$(/usr/bin/python3 "$root/examples/python/segment_mask.py" --frames "$frames" 2>&1); then
  check "python segment_mask.py" "$out"
else
  echo "FAIL python segment_mask.py"; echo "$out" | tail -20; fail=$((fail + 1))
fi

# Python, several cameras: three test sources through one shared instance, every frame with
# its result (mode=sync) from the instance "cams".
if out=$(/usr/bin/python3 "$root/examples/python/multi_camera.py" --test 3 --frames "$frames" \
    --headless --sync --timeout 120 2>&1); then
  served=$(grep -c "^test [0-9]: $frames frames, $frames with a result from instance cams" <<<"$out" || true)
  if [ "$served" -eq 3 ]; then
    echo "ok   python multi_camera.py: 3 cameras, $frames frames each, all from instance cams"; pass=$((pass + 1))
  else
    echo "FAIL python multi_camera.py: $served of 3 cameras fully served"; echo "$out" | tail -20; fail=$((fail + 1))
  fi
else
  echo "FAIL python multi_camera.py"; echo "$out" | tail -20; fail=$((fail + 1))
fi

echo "examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
