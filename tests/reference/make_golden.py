#!/usr/bin/env python3
"""Regenerate the golden files in tests/golden/ with the segref reference.

Usage (from the repository root):

    .venv/bin/python tests/reference/make_golden.py            # writes tests/golden/
    .venv/bin/python tests/reference/make_golden.py --out DIR  # writes elsewhere
    .venv/bin/python tests/reference/make_golden.py --check    # regenerate into a
        temporary folder and compare with tests/golden/ (exit 1 on any difference)

Golden set (see tests/reference/README.md):
  a) vtest.avi + models/selfie_segmentation.onnx, frames 0..59 processed in
     order with smoothing a=0.5, threshold 0.55, blur 1; masks of frames
     0,5,...,55 -> vtest_selfie_f{index:03d}.png
  b) messi5.jpg + models/selfie_segmentation.onnx, single frame, threshold
     0.55, blur 1 -> messi5_selfie_mask.png
  c) messi5.jpg + models/test_ffnet_tiny.onnx, single frame: label map
     -> messi5_ffnet_tiny_labels.png, person+rider mask (threshold 0.55)
     -> messi5_ffnet_tiny_mask.png
and manifest.json describing every file.

Supplementary set (skip with --no-gst): the same three cases on frames decoded
by GStreamer (gst-launch-1.0 ... ! videoconvert ! video/x-raw,format=BGR), named
vtest_selfie_gstdec_f{index:03d}.png, messi5_selfie_mask_gstdec.png,
messi5_ffnet_tiny_labels_gstdec.png and messi5_ffnet_tiny_mask_gstdec.png:
what the plugin itself sees in a "filesrc ! decodebin ! videoconvert" pipeline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import segref  # noqa: E402

DATA = "/usr/share/doc/opencv-doc/examples/data"
VTEST = f"{DATA}/vtest.avi"
MESSI = f"{DATA}/messi5.jpg"
SELFIE = "models/selfie_segmentation.onnx"
FFNET_TINY = "models/test_ffnet_tiny.onnx"

VTEST_FRAMES = 60        # frames 0..59 are processed sequentially
VTEST_EVERY = 5          # masks of frames 0, 5, ..., 55 are saved
VTEST_ALPHA = 0.5
THRESHOLD = 0.55
BLUR = 1
CLASSES = (11, 12)       # person, rider
NEAR = 0.02              # |s_up - threshold| < NEAR counts as "near threshold"
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 9]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_entry(model: segref.Model, rel: str) -> dict:
    i = model.info
    return {
        "path": rel,
        "sha256": sha256(model_path(rel)),
        "input_name": i.input_name,
        "input_shape": list(i.input_shape),
        "layout": i.layout,
        "input_size": {"width": i.width, "height": i.height},
        "output_name": i.output_name,
        "output_shape": list(i.output_shape),
    }


def near_threshold_fraction(s_up: np.ndarray, thr: float) -> float:
    return float(np.mean(np.abs(s_up - np.float32(thr)) < NEAR))


def write_png(out_dir: str, name: str, img: np.ndarray) -> str:
    path = os.path.join(out_dir, name)
    if not cv2.imwrite(path, img, PNG_PARAMS):
        raise RuntimeError(f"failed to write {path}")
    return path


def mask_entry(out_dir: str, name: str, r: segref.FrameResult, source: str, model_rel: str,
               params: dict, thr: float) -> dict:
    path = write_png(out_dir, name, r.mask)
    return {
        "file": name,
        "kind": "mask",
        "format": "PNG 8-bit grayscale, 0 = background, 255 = foreground",
        "source": source,
        "frame_index": r.index,
        "model": model_rel,
        "params": params,
        "image_size": {"width": r.frame_w, "height": r.frame_h},
        "model_output_size": {"width": int(r.s.shape[1]), "height": int(r.s.shape[0])},
        "foreground_fraction": round(segref.foreground_fraction(r.mask), 6),
        "near_threshold_fraction": round(near_threshold_fraction(r.s_up, thr), 6),
        "smoothed_prob_min_max": [round(float(r.s.min()), 6), round(float(r.s.max()), 6)],
        "sha256": sha256(path),
    }


MODELS_DIR = os.path.join(REPO, "models")


def model_path(rel: str) -> str:
    return os.path.join(MODELS_DIR, os.path.basename(rel))


# --------------------------------------------------------------------------
# Decoders. "cv2" is the primary definition (cv2.imread / cv2.VideoCapture).
# "gstdec" decodes with GStreamer exactly like a plugin test pipeline would
# (decoder + videoconvert to packed BGR; RGB/RGBx/BGRx give identical values),
# for the supplementary *_gstdec goldens.
# --------------------------------------------------------------------------

GST_PIPELINES = {
    MESSI: "filesrc location={src} ! jpegdec ! videoconvert ! video/x-raw,format=BGR ! fdsink fd=1",
    VTEST: ("filesrc location={src} ! avidemux ! avdec_msmpeg4 ! identity eos-after={n1} ! "
            "videoconvert ! video/x-raw,format=BGR ! fdsink fd=1"),
}


def gst_pipeline(src: str, n: int = 1) -> str:
    return GST_PIPELINES[src].format(src=src, n1=n + 1)


def gst_frames(src: str, width: int, height: int, n: int) -> list[np.ndarray]:
    cmd = ["gst-launch-1.0", "-q"] + shlex.split(gst_pipeline(src, n))
    raw = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout
    size = width * height * 3
    if len(raw) < n * size:
        raise RuntimeError(f"gst-launch-1.0 gave {len(raw)} bytes, expected {n * size}")
    return [np.frombuffer(raw[i * size:(i + 1) * size], np.uint8).reshape(height, width, 3)
            for i in range(n)]


def decode(src: str, decoder: str, n: int) -> list[np.ndarray]:
    frames = list(segref.iter_frames(src, n))
    if len(frames) != n:
        raise RuntimeError(f"decoded only {len(frames)} frames from {src}")
    if decoder == "gstdec":
        h, w = frames[0].shape[:2]
        frames = gst_frames(src, w, h, n)
    return frames


def mask_metrics(a: np.ndarray, b: np.ndarray) -> dict:
    fa, fb = a > 127, b > 127
    union = np.count_nonzero(fa | fb)
    return {"agreement": round(float(np.mean(fa == fb)), 6),
            "fg_iou": round(1.0 if union == 0 else np.count_nonzero(fa & fb) / union, 6)}


def generate_set(out_dir: str, decoder: str, selfie: segref.Model, tiny: segref.Model,
                 primary: dict | None) -> tuple[list, dict]:
    """One golden set. decoder 'cv2' -> primary names, 'gstdec' -> *_gstdec names."""
    sfx = "" if decoder == "cv2" else "_" + decoder
    files: list[dict] = []
    sequences: dict = {}

    def add(entry: dict, img: np.ndarray) -> None:
        entry["decoder"] = decoder
        if decoder != "cv2":
            entry["decoder_pipeline"] = "gst-launch-1.0 " + gst_pipeline(entry["source"], VTEST_FRAMES)
            if primary is not None:
                base = primary[entry["file"].replace(sfx, "")]
                entry["vs_cv2_decoded_golden"] = mask_metrics(img, base)
        files.append(entry)

    # ---- a) vtest.avi, selfie segmentation, 60 frames, a = 0.5 ------------
    params_a = {"alpha": VTEST_ALPHA, "threshold": THRESHOLD, "blur": BLUR,
                "sequence": f"frames 0..{VTEST_FRAMES - 1} processed in order, s_0 = p_0 at frame 0"}
    pipe = segref.Pipeline(selfie, alpha=VTEST_ALPHA, threshold=THRESHOLD, blur=BLUR)
    per_frame, near = [], []
    for frame in decode(VTEST, decoder, VTEST_FRAMES):
        r = pipe.process(frame)
        per_frame.append(round(segref.foreground_fraction(r.mask), 6))
        near.append(round(near_threshold_fraction(r.s_up, THRESHOLD), 6))
        if r.index % VTEST_EVERY == 0:
            name = f"vtest_selfie{sfx}_f{r.index:03d}.png"
            add(mask_entry(out_dir, name, r, VTEST, SELFIE, params_a, THRESHOLD), r.mask)
    sequences["vtest_selfie" + sfx] = {
        "source": VTEST, "model": SELFIE, "decoder": decoder, "params": params_a,
        "foreground_fraction_per_frame": per_frame,
        "near_threshold_fraction_per_frame": near,
    }

    # ---- b) messi5.jpg, selfie segmentation, single frame ------------------
    params_b = {"alpha": 1.0, "threshold": THRESHOLD, "blur": BLUR, "sequence": "single frame"}
    frame = decode(MESSI, decoder, 1)[0]
    r = segref.Pipeline(selfie, alpha=1.0, threshold=THRESHOLD, blur=BLUR).process(frame)
    add(mask_entry(out_dir, f"messi5_selfie_mask{sfx}.png", r, MESSI, SELFIE, params_b, THRESHOLD),
        r.mask)

    # ---- c) messi5.jpg, test_ffnet_tiny: label map + person/rider mask -----
    params_c = {"alpha": 1.0, "threshold": THRESHOLD, "blur": BLUR, "classes": list(CLASSES),
                "sequence": "single frame"}
    r = segref.Pipeline(tiny, alpha=1.0, threshold=THRESHOLD, blur=BLUR, classes=CLASSES).process(frame)
    if r.labels is None:
        raise RuntimeError(f"{FFNET_TINY} does not have a multi-class output")
    name = f"messi5_ffnet_tiny_labels{sfx}.png"
    path = write_png(out_dir, name, r.labels)
    probs = segref.class_probabilities(tiny.run_frame(frame))
    top2 = np.sort(probs, axis=0)[-2:]
    entry = {
        "file": name,
        "kind": "labels",
        "format": "PNG 8-bit grayscale, value = class index (Cityscapes trainId 0..18)",
        "source": MESSI,
        "frame_index": 0,
        "model": FFNET_TINY,
        "params": {"alpha": 1.0, "sequence": "single frame",
                   "resize": "argmax at model output resolution, then INTER_NEAREST to frame size"},
        "image_size": {"width": r.frame_w, "height": r.frame_h},
        "model_output_size": {"width": int(r.labels_model.shape[1]),
                              "height": int(r.labels_model.shape[0])},
        "labels_model_resolution": [" ".join(str(v) for v in row) for row in r.labels_model],
        "class_histogram": {str(c): int(v) for c, v in
                            enumerate(np.bincount(r.labels.ravel(), minlength=probs.shape[0]))
                            if v},
        "ambiguous_fraction_model_res": round(float(np.mean(top2[1] - top2[0] < 1e-3)), 6),
        "foreground_fraction": round(float(np.mean(np.isin(r.labels, CLASSES))), 6),
        "sha256": sha256(path),
    }
    entry["decoder"] = decoder
    if decoder != "cv2":
        entry["decoder_pipeline"] = "gst-launch-1.0 " + gst_pipeline(MESSI)
        if primary is not None:
            base = primary[name.replace(sfx, "")]
            entry["vs_cv2_decoded_golden"] = {"agreement": round(float(np.mean(r.labels == base)), 6)}
    files.append(entry)
    add(mask_entry(out_dir, f"messi5_ffnet_tiny_mask{sfx}.png", r, MESSI, FFNET_TINY,
                   params_c, THRESHOLD), r.mask)
    return files, sequences


def generate(out_dir: str, with_gst: bool = True) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    for rel in (SELFIE, FFNET_TINY):
        if not os.path.exists(model_path(rel)):
            raise FileNotFoundError(f"model {model_path(rel)} is missing")
    selfie = segref.Model(model_path(SELFIE))
    tiny = segref.Model(model_path(FFNET_TINY))

    files, sequences = generate_set(out_dir, "cv2", selfie, tiny, None)
    cap = cv2.VideoCapture(VTEST)
    total = 0
    while cap.grab():
        total += 1
    cap.release()
    sequences["vtest_selfie"]["frames_decoded_by_cv2_videocapture"] = total

    if with_gst:
        primary = {e["file"]: cv2.imread(os.path.join(out_dir, e["file"]), cv2.IMREAD_UNCHANGED)
                   for e in files}
        f2, s2 = generate_set(out_dir, "gstdec", selfie, tiny, primary)
        files += f2
        sequences.update(s2)

    return {
        "generator": "tests/reference/make_golden.py (reference: tests/reference/segref.py)",
        "regenerate": ".venv/bin/python tests/reference/make_golden.py",
        "versions": {"python": platform.python_version(), "opencv": cv2.__version__,
                     "onnxruntime": ort.__version__, "numpy": np.__version__,
                     "gstreamer": gst_version() if with_gst else None},
        "notes": [
            "primary goldens (decoder 'cv2') follow the specification: frames decoded with "
            "cv2.imread / cv2.VideoCapture (BGR). Supplementary goldens '*_gstdec*' run the same "
            "reference on frames decoded by GStreamer (decoder_pipeline; packed RGB, RGBx, BGR and "
            "BGRx output give identical pixel values), i.e. what a plugin sees inside a "
            "'filesrc ! decodebin ! videoconvert ! ...' pipeline",
            "foreground_fraction = count(mask == 255) / (width * height); for the label map: "
            "fraction of pixels labelled person or rider",
            f"near_threshold_fraction = fraction of pixels with |s_up - threshold| < {NEAR}; "
            "those are the pixels where an independent implementation may legitimately differ",
            "the foreground probability of a 19-class model is softmax summed over "
            "classes 11 (person) and 12 (rider)",
            "vs_cv2_decoded_golden: pixel agreement / foreground IoU of a *_gstdec golden "
            "against the primary golden of the same frame (effect of the decoder alone)",
        ],
        "sources": {
            VTEST: {"sha256": sha256(VTEST), "decoder": "cv2.VideoCapture (FFMPEG backend)"},
            MESSI: {"sha256": sha256(MESSI), "decoder": "cv2.imread IMREAD_COLOR"},
        },
        "models": {SELFIE: model_entry(selfie, SELFIE), FFNET_TINY: model_entry(tiny, FFNET_TINY)},
        "sequences": sequences,
        "files": files,
    }


def gst_version() -> str:
    out = subprocess.run(["gst-launch-1.0", "--version"], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return out.splitlines()[1].strip() if len(out.splitlines()) > 1 else out.strip()


def to_json(obj, indent: int = 0) -> str:
    """json.dumps with one item per line, except lists of scalars on one line."""
    pad, pad1 = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if len(obj) <= 4 and all(not isinstance(v, (dict, list)) for v in obj.values()):
            return json.dumps(obj)
        items = [f"{pad1}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj) and len(obj) <= 64:
            return json.dumps(obj)
        items = [f"{pad1}{to_json(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def compare_dirs(a: str, b: str) -> bool:
    ok = True
    for name in sorted(os.listdir(a)):
        if not name.endswith(".png"):
            continue
        x = cv2.imread(os.path.join(a, name), cv2.IMREAD_UNCHANGED)
        pb = os.path.join(b, name)
        y = cv2.imread(pb, cv2.IMREAD_UNCHANGED) if os.path.exists(pb) else None
        if y is None or x.shape != y.shape:
            print(f"{name}: missing or different size")
            ok = False
            continue
        diff = int(np.count_nonzero(x != y))
        print(f"{name}: {diff} differing pixels of {x.size}")
        ok &= diff == 0
    return ok


def main() -> int:
    global MODELS_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "golden"))
    ap.add_argument("--models-dir", default=MODELS_DIR,
                    help="folder holding selfie_segmentation.onnx and test_ffnet_tiny.onnx")
    ap.add_argument("--no-gst", action="store_true",
                    help="skip the supplementary *_gstdec goldens (needs gst-launch-1.0)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp folder and compare with --out")
    args = ap.parse_args()
    MODELS_DIR = os.path.abspath(args.models_dir)
    os.chdir(REPO)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp, not args.no_gst)
            return 0 if compare_dirs(args.out, tmp) else 1
    manifest = generate(args.out, not args.no_gst)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        f.write(to_json(manifest) + "\n")
    for e in manifest["files"]:
        print(f"{e['file']}: fg={e['foreground_fraction']:.4f}")
    print("vtest per-frame fg:", manifest["sequences"]["vtest_selfie"]["foreground_fraction_per_frame"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
