#!/usr/bin/env python3
"""The CUDA check: ffnetinfer (and segtool, which opens the same session code) on an NVIDIA
GPU through ONNX Runtime's CUDA execution provider, against the CPU on the same machine and
against the Python OpenCV + onnxruntime-gpu peer.

    python3 tests/gpu/cuda_check.py --out DIR [--bundle DIR]

Without --bundle it uses what is installed (gst-launch-1.0 with ffnetseg, segtool on PATH,
ORT_DYLIB_PATH pointing at onnxruntime-gpu's libonnxruntime.so, onnxruntime-gpu in Python).
With --bundle it uses a folder made by tests/gpu/bundle.py (for machines without GStreamer).

What it does, each step recorded in DIR/results.json (a failed step is recorded, not fatal):
  1. facts: GPU, driver, CPU cores, ONNX Runtime version;
  2. exports FFNet-40S (1024x2048) and FFNet-78S-LowRes (512x1024) with models/ffnet/export.py
     (untrained weights: speed only);
  3. segtool profile of every model on cpu and cuda: node placement and latency;
     provider=tensorrt, to record what happens without TensorRT's libraries;
  4. numerics on real frames (vtest.avi): the pipeline's masks with provider=cuda vs cpu;
  5. end-to-end 1080p throughput of segpreproc ! ffnetinfer ! segpostproc on real frames
     (fps from the difference between a 300- and a 60-frame run, so start-up and the first
     CUDA inferences do not count), cuda and cpu, and the Python peer on the same frames;
  6. bare ONNX Runtime (Python, onnxruntime-gpu) latency of the same models, against
     segtool's (ffnetinfer's session code).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SELFIE = os.path.join(ROOT, "models", "selfie_segmentation.onnx")
NATIVE = (768, 576)
HD = (1920, 1080)


def log(*a):
    print(*a, flush=True)


def environment(bundle: str | None) -> dict:
    env = dict(os.environ)
    # CUDA 13 runtime, cuBLAS, cuDNN, cuFFT, ... from the nvidia-* Python wheels, if present.
    nvidia = []
    for site in sys.path:
        nvidia += sorted({os.path.dirname(p) for p in glob.glob(os.path.join(site, "nvidia", "**", "lib*.so*"), recursive=True)})
    paths = []
    if bundle:
        b = os.path.abspath(bundle)
        paths.append(os.path.join(b, "lib"))
        env.update(
            PATH=os.path.join(b, "bin") + os.pathsep + env.get("PATH", ""),
            GST_PLUGIN_SYSTEM_PATH_1_0=os.path.join(b, "gst"),
            GST_PLUGIN_PATH_1_0="",
            GST_REGISTRY_1_0="/tmp/ffnetseg-gpucheck-registry.bin",
            GST_REGISTRY_FORK="no",
            ORT_DYLIB_PATH=os.path.join(b, "lib", "libonnxruntime.so"),
            PYTHONPATH=os.path.join(b, "py") + os.pathsep + env.get("PYTHONPATH", ""),
            FFNETSEG_MEDIA=os.path.join(b, "media"),
        )
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths + nvidia + [env.get("LD_LIBRARY_PATH", "")])
    return env


def run(cmd, env, timeout=300, check=True):
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    secs = time.perf_counter() - t
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exit {p.returncode}: {(p.stderr or p.stdout)[-1500:]}")
    return p, secs


def strict_or_lenient(fn, infer):
    """Run with disable-cpu-fallback=true; if ORT refuses (a node it would put on the CPU),
    run again without it and say so (segtool's placement lines tell which nodes)."""
    try:
        r = fn(infer + " disable-cpu-fallback=true")
        r["disable_cpu_fallback"] = True
    except RuntimeError as e:
        r = fn(infer)
        r.update(disable_cpu_fallback=False, strict_error=str(e)[-600:])
    return r


RESULTS_PATH = None  # results.json is rewritten after every step: a cut-off run keeps its results


ONLY = ()  # --only: run just the steps whose names start with these words


def step(results, name, fn):
    if ONLY and not name.startswith(ONLY + ("facts", "export", "frames")):
        return
    log(f"== {name}")
    try:
        results[name] = fn()
    except Exception as e:  # one failed step must not hide the others
        results[name] = {"error": str(e)[-2000:]}
    log(json.dumps(results[name], indent=1)[:3000])
    if RESULTS_PATH:
        with open(RESULTS_PATH, "w") as f:
            json.dump(results, f, indent=1)


def facts(env):
    smi, _ = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                  "--format=csv,noheader"], env)
    ort, _ = run([sys.executable, "-c", "import onnxruntime as o; print(o.__version__, o.get_available_providers())"], env)
    return {"gpu": smi.stdout.strip(), "onnxruntime_python": ort.stdout.strip(),
            "cpu_cores": os.cpu_count(), "ort_library": env.get("ORT_DYLIB_PATH")}


def export_ffnet(env, out_dir, variants):
    made = {}
    for spec in variants.split(","):
        variant, size = spec.split(":")
        h, w = (int(v) for v in size.split("x"))
        path = os.path.join(out_dir, f"{variant}_{h}x{w}.onnx")
        _, secs = run([sys.executable, os.path.join(ROOT, "models", "ffnet", "export.py"), "--variant", variant,
                       "--height", str(h), "--width", str(w), "--out", path, "--no-check"], env, timeout=600)
        made[variant] = {"path": path, "export_s": round(secs, 1)}
    return made


def profile(env, model, provider, runs):
    p, _ = run(["segtool", "profile", model, "--provider", provider, "--runs", str(runs), "--warmup", "3"], env, check=False)
    text = p.stdout + p.stderr
    r = {"exit": p.returncode}
    m = re.search(r"latency\s+p50 ([\d.]+) ms, p90 ([\d.]+) ms", text)
    if m:
        r.update(p50_ms=float(m.group(1)), p90_ms=float(m.group(2)))
    m = re.search(r"session\s+([\d.]+) ms", text)
    if m:
        r["session_ms"] = float(m.group(1))
    r["placement"] = re.findall(r"placement\s+(.*)", text)
    r["provider"] = (re.findall(r"provider\s+(.*)", text) or [""])[0]
    r["warnings"] = re.findall(r"warning\s+(.*)", text)
    if p.returncode != 0:
        r["error"] = text.strip()[-1200:]
    return r


def write_frames(env, path, size, count):
    """vtest.avi frames as raw I420 (decoded and resized by the peer's OpenCV)."""
    code = f"""
import cv2, os
cap = cv2.VideoCapture(os.path.join(os.environ.get('FFNETSEG_MEDIA', '/usr/share/doc/opencv-doc/examples/data'), 'vtest.avi'))
n = 0
with open({path!r}, 'wb') as f:
    while n < {count}:
        ok, bgr = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0); continue
        if bgr.shape[1] != {size[0]}:
            bgr = cv2.resize(bgr, {size}, interpolation=cv2.INTER_LINEAR)
        f.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes()); n += 1
"""
    run([sys.executable, "-c", code], env)


def pipeline(raw, size, frames, infer, post, sink="fakesink sync=false", queues=False):
    """Real frames from a raw file; infer=None: the source alone (what reading costs).
    queues: a queue between the elements, so that each stage runs on its own thread."""
    w, h = size
    source = (f"filesrc location={raw} blocksize={w * h * 3 // 2} num-buffers={frames} ! "
              f"rawvideoparse format=i420 width={w} height={h} framerate=30/1 ! ")
    if infer is None:
        return (source + sink).split()
    q = "queue max-size-buffers=3 ! " if queues else ""
    return (source + f"segpreproc ! {q}ffnetinfer {infer} ! {q}segpostproc {post} ! {sink}").split()


def numerics(env, raw, model, frames, work):
    def mask(infer):
        provider = infer.split("provider=")[1].split()[0]
        out = os.path.join(work, f"mask_{os.path.basename(model)}_{provider}.gray")
        run(["gst-launch-1.0", "-q"] + pipeline(raw, NATIVE, frames, infer, "mode=mask", f"filesink location={out}"), env)
        return {"path": out}

    masks = {"cpu": mask(f"model={model} provider=cpu")["path"]}
    cuda = strict_or_lenient(mask, f"model={model} provider=cuda")
    masks["cuda"] = cuda.pop("path")
    code = f"""
import json, numpy as np
a = np.fromfile({masks['cpu']!r}, np.uint8) > 127; b = np.fromfile({masks['cuda']!r}, np.uint8) > 127
assert a.size == b.size == {frames * NATIVE[0] * NATIVE[1]}, (a.size, b.size)
print(json.dumps({{"frames": {frames}, "pixel_agreement": float((a == b).mean()),
  "iou": float((a & b).sum() / max((a | b).sum(), 1)), "foreground_share_cpu": float(a.mean())}}))
"""
    p, _ = run([sys.executable, "-c", code], env)
    return {**json.loads(p.stdout), **cuda}


def throughput(env, raw, size, infer, post, few=60, many=300, queues=False, repeats=3):
    """Frames per second from gst-launch's "Execution ended after" (PLAYING to EOS: the
    session is created and the first frame inferred before that, in READY/PAUSED), as the
    difference between a `many`- and a `few`-frame run; the median of `repeats` pairs."""
    def execution_s(n, infer):
        p, _ = run(["gst-launch-1.0"] + pipeline(raw, size, n, infer, post, queues=queues), env)
        m = re.search(r"Execution ended after (\d+):(\d+):([\d.]+)", p.stdout)
        if not m:
            raise RuntimeError(f"no execution time in: {p.stdout[-500:]}")
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))

    def measure(infer):
        fps = sorted((many - few) / (execution_s(many, infer) - execution_s(few, infer))
                     for _ in range(repeats))
        return {"fps": round(fps[len(fps) // 2], 1), "fps_runs": [round(f, 1) for f in fps],
                "frames": [few, many], "infer": infer, "queues": queues}

    return measure(None) if infer is None else strict_or_lenient(measure, infer)


def mask_iou(a_path, b_path, env):
    code = f"""
import json, numpy as np
a = np.fromfile({a_path!r}, np.uint8) > 127; b = np.fromfile({b_path!r}, np.uint8) > 127
print(json.dumps({{"iou": float((a & b).sum() / max((a | b).sum(), 1)), "pixel_agreement": float((a == b).mean())}}))
"""
    p, _ = run([sys.executable, "-c", code], env)
    return json.loads(p.stdout)


def stage_bench(env):
    p, _ = run(["ffnetseg-bench", "multiclass"], env)
    return json.loads(p.stdout.strip().splitlines()[-1])


def peer(env, provider, size, frames=120):
    p, _ = run([sys.executable, os.path.join(ROOT, "tests", "bench", "peer_opencv_ort.py"), "--video",
                os.path.join(env.get("FFNETSEG_MEDIA", "/usr/share/doc/opencv-doc/examples/data"), "vtest.avi"),
                "--model", SELFIE, "--frames", str(frames), "--threads", "0", "--provider", provider,
                "--width", str(size[0]), "--height", str(size[1])], env)
    return json.loads(p.stdout.strip().splitlines()[-1])


def bare_ort(env, model, runs=50):
    code = f"""
import json, time, numpy as np, onnxruntime as ort
s = ort.InferenceSession({model!r}, providers=['CUDAExecutionProvider'])
i = s.get_inputs()[0]
n = int(np.prod(i.shape)); x = ((np.arange(n) * 7919) % 1000 / 1000.0).astype(np.float32).reshape(i.shape)
for _ in range(3): s.run(None, {{i.name: x}})
t = []
for _ in range({runs}):
    t0 = time.perf_counter(); s.run(None, {{i.name: x}}); t.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({{"providers": s.get_providers(), "p50_ms": float(np.median(t))}}))
"""
    p, _ = run([sys.executable, "-c", code], env)
    return json.loads(p.stdout.strip().splitlines()[-1])


def summary(results: dict) -> str:
    """Markdown tables of a results.json (docs/gpu.md quotes one)."""
    def get(key, field, fmt="{:.2f}"):
        v = results.get(key, {}).get(field)
        return fmt.format(v) if isinstance(v, (int, float)) else "—"

    f = results.get("facts", {})
    lines = [f"GPU: {f.get('gpu', '?')}; {f.get('cpu_cores', '?')} CPU cores; "
             f"onnxruntime-gpu {str(f.get('onnxruntime_python', '?')).split()[0]}; run {results.get('started')}.", "",
             "| model | ffnetinfer session on CUDA: p50 ms | nodes | on CPU (all cores): p50 ms | CUDA speedup | bare ORT Python on CUDA: p50 ms |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in ("selfie_fp32", "selfie_w8a8", "ffnet_40s", "ffnet_78s_lowres"):
        cuda, cpu = results.get(f"profile {name} cuda", {}), results.get(f"profile {name} cpu", {})
        if "p50_ms" not in cuda:
            continue
        speedup = f"{cpu['p50_ms'] / cuda['p50_ms']:.1f}×" if "p50_ms" in cpu else "—"
        lines.append(f"| {name} | {cuda['p50_ms']:.2f} | {'; '.join(cuda.get('placement', []))} | "
                     f"{get(f'profile {name} cpu', 'p50_ms')} | {speedup} | {get(f'bare_ort {name} cuda', 'p50_ms')} |")
    lines += ["", "| 1080p pipeline on real frames (vtest.avi, upscaled) | fps |", "| --- | --- |"]
    for key in [k for k in results if k.startswith(("e2e", "peer"))]:
        lines.append(f"| {key} | {get(key, 'fps', '{:.1f}')} |")
    lines += ["", "| masks, 120 vtest.avi frames | IoU | pixel agreement |", "| --- | --- | --- |"]
    for key in [k for k in results if k.startswith("numerics")]:
        r = results[key]
        for sub, v in ({"": r} if "iou" in r else r).items():
            if isinstance(v, dict) and "iou" in v:
                lines.append(f"| {key} {sub} | {v['iou']:.4f} | {v['pixel_agreement']:.5f} |")
    trt = results.get("profile selfie_fp32 tensorrt", {})
    if trt:
        lines += ["", f"provider=tensorrt: ran on `{trt.get('provider', '?')}`; "
                  f"warning: {(trt.get('warnings') or ['none'])[0][:300]}"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/gpucheck/results")
    ap.add_argument("--bundle")
    ap.add_argument("--only", default="", help="comma-separated step prefixes, e.g. e2e,peer")
    ap.add_argument("--summary", metavar="RESULTS_JSON", help="only print the tables of an earlier run")
    ap.add_argument("--variants", default="ffnet_40s:1024x2048,ffnet_78s_lowres:512x1024",
                    help="FFNet variants to export and run, VARIANT:HxW,...")
    a = ap.parse_args()
    if a.summary:
        with open(a.summary) as f:
            print(summary(json.load(f)), end="")
        return
    os.makedirs(a.out, exist_ok=True)
    global RESULTS_PATH, ONLY
    RESULTS_PATH = os.path.join(a.out, "results.json")
    ONLY = tuple(x for x in a.only.split(",") if x)
    work = "/tmp/ffnetseg-gpucheck"
    os.makedirs(work, exist_ok=True)
    env = environment(a.bundle)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    models = {"selfie_fp32": SELFIE}
    w8a8 = os.path.join(a.bundle or "", "models", "selfie_segmentation_w8a8.onnx")
    if os.path.exists(w8a8):
        models["selfie_w8a8"] = w8a8

    step(results, "facts", lambda: facts(env))
    step(results, "export", lambda: export_ffnet(env, work, a.variants))
    for variant, made in (results["export"] if "error" not in results["export"] else {}).items():
        models[variant] = made["path"]
    for name, model in models.items():
        slow_on_cpu = name.startswith("ffnet")
        step(results, f"profile {name} cuda", lambda m=model: profile(env, m, "cuda", 50))
        step(results, f"profile {name} cpu", lambda m=model, s=slow_on_cpu: profile(env, m, "cpu", 5 if s else 50))
        step(results, f"bare_ort {name} cuda", lambda m=model: bare_ort(env, m))
    step(results, "profile selfie_fp32 tensorrt", lambda: profile(env, SELFIE, "tensorrt", 5))

    native, hd = os.path.join(work, "native.i420"), os.path.join(work, "hd.i420")
    def frames():
        write_frames(env, native, NATIVE, 120)
        write_frames(env, hd, HD, 300)
        return {"native": NATIVE, "hd": HD}

    step(results, "frames", frames)
    step(results, "numerics selfie_fp32", lambda: numerics(env, native, SELFIE, 120, work))
    if "selfie_w8a8" in models:
        step(results, "numerics selfie_w8a8", lambda: numerics(env, native, models["selfie_w8a8"], 120, work))

        def against_fp32():
            fp32 = os.path.join(work, f"mask_{os.path.basename(SELFIE)}_cpu.gray")
            q = os.path.join(work, f"mask_{os.path.basename(models['selfie_w8a8'])}_" + "{}.gray")
            return {p: mask_iou(fp32, q.format(p), env) for p in ("cpu", "cuda")}

        step(results, "numerics selfie_w8a8 vs fp32 (cpu)", against_fp32)
    overlay = "mode=overlay smoothing=0.5"
    step(results, "e2e 1080p source only", lambda: throughput(env, hd, HD, None, None, repeats=1))
    for provider in ("cuda", "cpu"):
        step(results, f"e2e 1080p selfie {provider}",
             lambda p=provider: throughput(env, hd, HD, f"model={SELFIE} provider={p}", overlay))
    if "ffnet_40s" in models:
        ffnet = f"model={models['ffnet_40s']} provider=cuda"
        step(results, "e2e 1080p ffnet_40s cuda",
             lambda: throughput(env, hd, HD, ffnet, overlay, few=20, many=140))
        step(results, "e2e 1080p ffnet_40s cuda, queues",
             lambda: throughput(env, hd, HD, ffnet, overlay, few=20, many=140, queues=True))
        # OpenCV's default thread pool (one thread per core) against one thread, for the
        # stages that run through OpenCV (resize; the multi-class softmax).
        one_thread = dict(env, OPENCV_FOR_THREADS_NUM="1")
        step(results, "e2e 1080p ffnet_40s cuda, OpenCV 1 thread",
             lambda: throughput(one_thread, hd, HD, ffnet, overlay, few=20, many=140))
        step(results, "e2e 1080p selfie cuda, OpenCV 1 thread",
             lambda: throughput(one_thread, hd, HD, f"model={SELFIE} provider=cuda", overlay))
    step(results, "stage bench multiclass (1 OpenCV thread)", lambda: stage_bench(env))
    for provider in ("cuda", "cpu"):
        step(results, f"peer 1080p selfie {provider}", lambda p=provider: peer(env, p, HD))
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(summary(results))


if __name__ == "__main__":
    main()
