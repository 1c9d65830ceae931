#!/usr/bin/env python3
"""CPU latency of an ONNX model, measured through ffnetinfer's own session code.

    python models/ffnet/bench.py MODEL.onnx --threads 2 --runs 5 --warmup 1

Uses ``segtool profile`` (the workspace's CLI over the engine's ONNX Runtime session code:
``cargo build --release -p segtool``) when it exists, found as $SEGTOOL or
target/release/segtool. libonnxruntime.so is taken from $ORT_DYLIB_PATH or, if unset,
from the onnxruntime wheel of the Python running this script, so the C++ runtime version
is the one the quantizer used. Without segtool it falls back to onnxruntime's Python API
(same session options: CPU EP, intra-op threads, all graph optimisations) and says so in
the "tool" field.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def find_segtool() -> str | None:
    p = os.environ.get("SEGTOOL")
    if p:
        return p if os.access(p, os.X_OK) else None
    cand = os.path.join(REPO, "target", "release", "segtool")
    if os.access(cand, os.X_OK):
        return cand
    return shutil.which("segtool")


def ort_library() -> str | None:
    if os.environ.get("ORT_DYLIB_PATH"):
        return os.environ["ORT_DYLIB_PATH"]
    try:
        import onnxruntime

        libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi",
                                             "libonnxruntime.so.1*")))
        return libs[-1] if libs else None
    except ImportError:
        return None


def profile_segtool(tool: str, model: str, threads: int, runs: int, warmup: int) -> dict:
    env = dict(os.environ)
    lib = ort_library()
    if lib:
        env["ORT_DYLIB_PATH"] = lib
    cmd = [tool, "profile", model, "--provider", "cpu", "--threads", str(threads),
           "--runs", str(runs), "--warmup", str(warmup), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    line = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")][-1]
    r = json.loads(line)
    r["tool"] = "segtool"
    r["warmup"] = warmup
    if lib:
        r["ort_library"] = os.path.basename(lib)
    return r


def profile_python(model: str, threads: int, runs: int, warmup: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    create = (time.perf_counter() - t) * 1e3
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in i.shape],
                                         dtype=np.float32)
    t = time.perf_counter()
    s.run(None, {i.name: x})
    first = (time.perf_counter() - t) * 1e3
    for _ in range(max(0, warmup - 1)):
        s.run(None, {i.name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {i.name: x})
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()

    def pct(q):
        return times[min(len(times) - 1, int(round(q * (len(times) - 1))))]

    return {"model": model, "provider": "cpu", "threads": threads, "create_ms": create,
            "first_ms": first, "p50_ms": statistics.median(times), "p90_ms": pct(0.9),
            "p99_ms": pct(0.99), "runs": runs, "warmup": warmup,
            "tool": "python-onnxruntime " + ort.__version__}


def profile(model: str, threads: int = 2, runs: int = 10, warmup: int = 2,
            prefer_segtool: bool = True) -> dict:
    tool = find_segtool() if prefer_segtool else None
    if tool:
        return profile_segtool(tool, model, threads, runs, warmup)
    return profile_python(model, threads, runs, warmup)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--python", action="store_true", help="use onnxruntime's Python API, not segtool")
    a = ap.parse_args(argv)
    print(json.dumps(profile(a.model, a.threads, a.runs, a.warmup, prefer_segtool=not a.python)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
