#!/usr/bin/env python3
"""The peer a user would otherwise write: the stages of docs/stages.md in Python with
OpenCV + onnxruntime, timed on frames already decoded into memory (decoding is not timed,
as on the plugin side).

Prints one JSON object: frames, seconds, fps, per-stage means (ms).

    .venv/bin/python tests/bench/peer_opencv_ort.py --video vtest.avi --frames 120 \
        [--width 1920 --height 1080] --model models/selfie_segmentation.onnx --threads 2
"""
import argparse
import json
import time

import cv2
import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--width", type=int, default=0)
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (0: its default)")
    ap.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--smoothing", type=float, default=0.5)
    ap.add_argument("--threshold", type=float, default=0.55)
    ap.add_argument("--opacity", type=float, default=0.5)
    args = ap.parse_args()

    cv2.setNumThreads(1)  # the plugin's stages are measured single-threaded too
    cap = cv2.VideoCapture(args.video)
    frames = []
    while len(frames) < args.frames:
        ok, f = cap.read()
        if not ok:
            break
        if args.width:
            f = cv2.resize(f, (args.width, args.height), interpolation=cv2.INTER_LINEAR)
        frames.append(f)

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    wanted = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[args.provider]
    sess = ort.InferenceSession(args.model, so, providers=[wanted])
    if sess.get_providers()[0] != wanted:  # ORT falls back silently when CUDA cannot load
        raise SystemExit(f"{wanted} is not available: session runs on {sess.get_providers()}")
    inp = sess.get_inputs()[0]
    shape = inp.shape
    nhwc = shape[3] == 3
    mh, mw = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    colour = np.array([0, 255, 0], np.float32)  # BGR green

    # One untimed inference first: the plugin side is timed after its session's first run too
    # (CUDA spends ~1 s on it: cuDNN set-up).
    warm = cv2.resize(frames[0], (mw, mh)).astype(np.float32) / 255.0
    warm = warm[None] if nhwc else warm.transpose(2, 0, 1)[None]
    sess.run(None, {inp.name: np.ascontiguousarray(warm)})

    t_pre = t_inf = t_post = 0.0
    smoothed = None
    start = time.perf_counter()
    for f in frames:
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        x = cv2.resize(rgb, (mw, mh), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        x = x[None] if nhwc else x.transpose(2, 0, 1)[None]
        t1 = time.perf_counter()
        out = sess.run(None, {inp.name: np.ascontiguousarray(x)})[0]
        t2 = time.perf_counter()
        p = out.reshape(mh, mw) if out.size == mh * mw else out[0, 0]
        if smoothed is None:
            smoothed = p.astype(np.float32).copy()
        else:
            cv2.accumulateWeighted(p.astype(np.float32), smoothed, args.smoothing)
        up = cv2.resize(smoothed, (f.shape[1], f.shape[0]), interpolation=cv2.INTER_LINEAR)
        _, m = cv2.threshold(up, args.threshold, 1.0, cv2.THRESH_BINARY)
        a = (m * args.opacity)[..., None]
        blended = (f.astype(np.float32) * (1.0 - a) + colour * a).astype(np.uint8)
        t3 = time.perf_counter()
        t_pre += t1 - t0
        t_inf += t2 - t1
        t_post += t3 - t2
        assert blended.shape == f.shape
    secs = time.perf_counter() - start
    n = len(frames)
    print(json.dumps({
        "frames": n, "seconds": secs, "fps": n / secs,
        "width": frames[0].shape[1], "height": frames[0].shape[0],
        "pre_ms": 1e3 * t_pre / n, "infer_ms": 1e3 * t_inf / n, "post_ms": 1e3 * t_post / n,
        "threads": args.threads, "provider": args.provider,
    }))


if __name__ == "__main__":
    main()
