#!/usr/bin/env python3
"""segref - independent Python reference of the ffnetseg segmentation stages.

This module is deliberately written against OpenCV (cv2), onnxruntime and
numpy only, without looking at the Rust implementation, so that the golden
files in ``tests/golden/`` are an independent oracle for the plugin.

Notation: the frame is ``H x W`` (frame_h x frame_w), the model input is
``h_in x w_in`` and the model output ("model resolution") is ``h x w``.
All floating point arrays are float32 unless stated otherwise.

Stage definitions
=================

1. Pre-processing (``preprocess``)
   The frame is BGR uint8, as returned by ``cv2.imread`` / ``cv2.VideoCapture``::

       rgb     = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
       resized = cv2.resize(rgb, (w_in, h_in), interpolation=cv2.INTER_LINEAR)
                 # stretch to the model size, no letterbox, aspect not kept
       x       = resized.astype(float32) / 255            # values in [0, 1]

   Layout comes from the model's first input shape ``[N, d1, d2, d3]``:
   NHWC if ``d3 == 3`` (x has shape 1 x h_in x w_in x 3), otherwise NCHW
   (x = x.transpose(2, 0, 1), shape 1 x 3 x h_in x w_in). Batch is 1.
   Channel order is R, G, B in both layouts. No mean/std normalisation.

2. Inference (``Model.infer``)
   onnxruntime, CPUExecutionProvider, feeding the model's FIRST input and
   reading its FIRST output.

3. Foreground probability at model resolution (``foreground_probability``)
   * one-channel output (1 x h x w x 1 or 1 x 1 x h x w):
       p = output reshaped to h x w (used as is: the model already emits a
       probability, nothing is applied to it)
   * multi-class output (1 x C x h x w logits, e.g. C = 19 Cityscapes):
       P[c] = exp(z[c] - max_k z[k]) / sum_j exp(z[j] - max_k z[k])  (softmax over C)
       p    = sum_{c in classes} P[c]           (default classes = {11 person, 12 rider})

4. Temporal smoothing at model resolution (``Smoother``), float32::

       s_0 = p_0
       s_t = a * p_t + (1 - a) * s_{t-1}

   a = 1 means no smoothing. The state is one h x w map for the foreground
   probability, and a C x h x w stack when smoothing class probabilities
   for the label map (each class smoothed independently with the same rule).

5. Upsample to the frame (``upsample``)::

       s_up = cv2.resize(s_t, (W, H), interpolation=cv2.INTER_LINEAR)   # float32

6. Threshold (``threshold_mask``)::

       m = 255 where s_up > threshold else 0         (uint8, default threshold 0.55)

   The comparison is strict and done in float32, i.e. against
   float32(threshold) (0.55 -> 0.550000011920929).

7. Box blur (``box_blur``), only if k > 1 (k = 1 means off)::

       alpha = cv2.blur(m.astype(float32) / 255, (k, k))   # soft alpha in [0, 1]

   cv2.blur uses the normalised k x k box filter, anchor at the centre and
   border mode BORDER_REFLECT_101.

8. Multi-class label map (``label_map``)::

       P_s    = smoothed softmax probabilities, C x h x w (rule 4 per class;
                for a single frame P_s = softmax(z))
       L      = argmax_c P_s[c]  (ties -> lowest class index), uint8, h x w
                (model OUTPUT resolution, e.g. 16 x 32 for test_ffnet_tiny)
       L_up   = cv2.resize(L, (W, H), interpolation=cv2.INTER_NEAREST)

   OpenCV's INTER_NEAREST maps destination pixel (X, Y) to source pixel
   (min(floor(X * w / W), w - 1), min(floor(Y * h / H), h - 1)).

Foreground fraction, as recorded in the golden manifest, is
``count(m == 255) / (W * H)``.

CLI
===
    segref.py mask   --model M --input IMG_OR_VIDEO [--frames N] [--alpha A]
                     [--threshold T] [--blur K] [--classes 11,12] --out DIR_OR_PNG
    segref.py labels --model M --input IMG_OR_VIDEO [--frames N] [--alpha A] --out DIR_OR_PNG
    segref.py info   --model M
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np
import onnxruntime as ort

DEFAULT_THRESHOLD = 0.55
DEFAULT_CLASSES = (11, 12)  # Cityscapes person, rider
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------
# Media input
# --------------------------------------------------------------------------

def load_image(path: str) -> np.ndarray:
    """Read an image as BGR uint8 (cv2.imread, IMREAD_COLOR)."""
    frame = cv2.imread(path, cv2.IMREAD_COLOR)
    if frame is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return frame


def iter_frames(path: str, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield BGR uint8 frames: one for an image, decoded frames for a video."""
    if path.lower().endswith(IMAGE_EXTS):
        yield load_image(path)
        return
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
            n += 1
    finally:
        cap.release()


# --------------------------------------------------------------------------
# Stage 1: pre-processing
# --------------------------------------------------------------------------

def preprocess(frame_bgr: np.ndarray, model_w: int, model_h: int, layout: str) -> np.ndarray:
    """BGR uint8 frame -> float32 batch-1 tensor in [0, 1], RGB, NHWC or NCHW."""
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 BGR frame, got {frame_bgr.shape} {frame_bgr.dtype}")
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (model_w, model_h), interpolation=cv2.INTER_LINEAR)
    x = resized.astype(np.float32) / np.float32(255.0)
    if layout == "NHWC":
        x = x[np.newaxis, :, :, :]
    elif layout == "NCHW":
        x = x.transpose(2, 0, 1)[np.newaxis, :, :, :]
    else:
        raise ValueError(f"unknown layout {layout}")
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------
# Stage 2: inference
# --------------------------------------------------------------------------

@dataclass
class ModelInfo:
    input_name: str
    input_shape: tuple
    output_name: str
    output_shape: tuple
    layout: str
    width: int
    height: int


class Model:
    """onnxruntime CPU session; first input, first output."""

    def __init__(self, path: str, threads: int = 1):
        so = ort.SessionOptions()
        # Single thread: slower but reproducible run to run.
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(path, sess_options=so,
                                            providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        out = self.session.get_outputs()[0]
        shape = tuple(inp.shape)
        if len(shape) != 4:
            raise ValueError(f"expected a 4-D model input, got {shape}")
        layout = "NHWC" if shape[3] == 3 else "NCHW"
        h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
        if not (isinstance(h, int) and isinstance(w, int)):
            raise ValueError(f"model input has dynamic spatial size {shape}")
        self.info = ModelInfo(inp.name, shape, out.name, tuple(out.shape), layout, w, h)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.info.output_name], {self.info.input_name: x})[0]

    def run_frame(self, frame_bgr: np.ndarray) -> np.ndarray:
        """preprocess + infer; returns the raw first output."""
        return self.infer(preprocess(frame_bgr, self.info.width, self.info.height, self.info.layout))


# --------------------------------------------------------------------------
# Stage 3: probabilities at model resolution
# --------------------------------------------------------------------------

def output_kind(output: np.ndarray) -> str:
    """'single' for 1xHxWx1 / 1x1xHxW, 'multi' for 1xCxHxW (C > 1)."""
    if output.ndim != 4 or output.shape[0] != 1:
        raise ValueError(f"expected a batch-1 4-D output, got {output.shape}")
    if output.shape[1] == 1 or output.shape[3] == 1:
        return "single"
    return "multi"


def softmax_classes(output: np.ndarray) -> np.ndarray:
    """1xCxhxw logits -> Cxhxw float32 softmax over C (max-subtracted)."""
    z = output[0].astype(np.float32)
    z = z - z.max(axis=0, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def class_probabilities(output: np.ndarray) -> np.ndarray:
    if output_kind(output) != "multi":
        raise ValueError(f"class probabilities need a 1xCxHxW output, got {output.shape}")
    return softmax_classes(output)


def foreground_probability(output: np.ndarray, classes: Sequence[int] = DEFAULT_CLASSES) -> np.ndarray:
    """Raw output -> h x w float32 foreground probability."""
    if output_kind(output) == "single":
        if output.shape[1] == 1:
            p = output[0, 0]
        else:
            p = output[0, :, :, 0]
        return np.ascontiguousarray(p, dtype=np.float32)
    probs = softmax_classes(output)
    p = np.zeros(probs.shape[1:], dtype=np.float32)
    for c in classes:
        p += probs[c]
    return p


# --------------------------------------------------------------------------
# Stage 4: temporal smoothing
# --------------------------------------------------------------------------

class Smoother:
    """Exponential smoothing s_0 = p_0, s_t = a*p_t + (1-a)*s_{t-1} (float32)."""

    def __init__(self, alpha: float = 1.0):
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.a = np.float32(alpha)
        self.b = np.float32(1.0 - alpha)
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None

    def update(self, p: np.ndarray) -> np.ndarray:
        p = p.astype(np.float32)
        if self.state is None or self.state.shape != p.shape:
            self.state = p.copy()
        else:
            self.state = (self.a * p + self.b * self.state).astype(np.float32)
        return self.state


# --------------------------------------------------------------------------
# Stages 5-8: upsample, threshold, blur, label map
# --------------------------------------------------------------------------

def upsample(s: np.ndarray, frame_w: int, frame_h: int) -> np.ndarray:
    return cv2.resize(s.astype(np.float32), (frame_w, frame_h), interpolation=cv2.INTER_LINEAR)


def threshold_mask(s_up: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    return np.where(s_up > np.float32(threshold), np.uint8(255), np.uint8(0)).astype(np.uint8)


def box_blur(mask: np.ndarray, k: int) -> np.ndarray:
    """k > 1: float32 soft alpha in [0,1]; k <= 1: the hard mask as float32 0/1."""
    a = mask.astype(np.float32) / np.float32(255.0)
    if k > 1:
        a = cv2.blur(a, (k, k))
    return a


def mask_from_smoothed(s: np.ndarray, frame_w: int, frame_h: int,
                       threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    return threshold_mask(upsample(s, frame_w, frame_h), threshold)


def label_map(probs: np.ndarray, frame_w: int, frame_h: int) -> tuple[np.ndarray, np.ndarray]:
    """C x h x w (smoothed) probabilities -> (labels h x w, labels W x H), uint8."""
    if probs.shape[0] > 256:
        raise ValueError("more than 256 classes do not fit a uint8 label map")
    lab = np.argmax(probs, axis=0).astype(np.uint8)
    up = cv2.resize(lab, (frame_w, frame_h), interpolation=cv2.INTER_NEAREST)
    return lab, up


def foreground_fraction(mask: np.ndarray) -> float:
    return float(np.count_nonzero(mask == 255)) / float(mask.size)


# --------------------------------------------------------------------------
# Whole-pipeline helper
# --------------------------------------------------------------------------

@dataclass
class FrameResult:
    index: int
    frame_w: int
    frame_h: int
    p: np.ndarray            # foreground probability, model resolution
    s: np.ndarray            # smoothed foreground probability, model resolution
    s_up: np.ndarray         # upsampled, frame resolution
    mask: np.ndarray         # uint8 0/255, frame resolution
    alpha: np.ndarray | None  # box-blurred soft alpha (k > 1) else None
    labels_model: np.ndarray | None  # uint8, model resolution (multi-class only)
    labels: np.ndarray | None        # uint8, frame resolution (multi-class only)


class Pipeline:
    """Stateful per-stream processing: feed frames in order."""

    def __init__(self, model: Model, alpha: float = 1.0, threshold: float = DEFAULT_THRESHOLD,
                 blur: int = 1, classes: Sequence[int] = DEFAULT_CLASSES):
        self.model = model
        self.threshold = threshold
        self.blur = blur
        self.classes = tuple(classes)
        self.fg = Smoother(alpha)
        self.cls = Smoother(alpha)
        self.index = 0

    def process(self, frame_bgr: np.ndarray) -> FrameResult:
        fh, fw = frame_bgr.shape[:2]
        out = self.model.run_frame(frame_bgr)
        p = foreground_probability(out, self.classes)
        s = self.fg.update(p)
        s_up = upsample(s, fw, fh)
        m = threshold_mask(s_up, self.threshold)
        a = box_blur(m, self.blur) if self.blur > 1 else None
        lab_m = lab = None
        if output_kind(out) == "multi":
            ps = self.cls.update(class_probabilities(out))
            lab_m, lab = label_map(ps, fw, fh)
        r = FrameResult(self.index, fw, fh, p, s, s_up, m, a, lab_m, lab)
        self.index += 1
        return r


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _parse_classes(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def _out_path(out: str, index: int, n_hint_video: bool, suffix: str) -> str:
    if out.lower().endswith(".png") and not n_hint_video:
        return out
    os.makedirs(out, exist_ok=True)
    return os.path.join(out, f"{suffix}_f{index:03d}.png")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("mask", "labels"):
        sp = sub.add_parser(name)
        sp.add_argument("--model", required=True)
        sp.add_argument("--input", required=True, help="image or video")
        sp.add_argument("--frames", type=int, default=None, help="max frames (video)")
        sp.add_argument("--alpha", type=float, default=1.0, help="smoothing factor a (1 = off)")
        sp.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
        sp.add_argument("--blur", type=int, default=1, help="box blur size k (1 = off)")
        sp.add_argument("--classes", type=_parse_classes, default=DEFAULT_CLASSES)
        sp.add_argument("--every", type=int, default=1, help="write every N-th frame")
        sp.add_argument("--out", required=True, help="PNG path (image) or folder")
    sp = sub.add_parser("info")
    sp.add_argument("--model", required=True)
    args = ap.parse_args(argv)

    model = Model(args.model)
    if args.cmd == "info":
        print(model.info)
        return 0

    is_video = not args.input.lower().endswith(IMAGE_EXTS)
    pipe = Pipeline(model, args.alpha, args.threshold, args.blur, args.classes)
    for frame in iter_frames(args.input, args.frames):
        r = pipe.process(frame)
        if r.index % args.every:
            continue
        if args.cmd == "mask":
            img = r.mask if r.alpha is None else np.round(r.alpha * 255).astype(np.uint8)
            path = _out_path(args.out, r.index, is_video, "mask")
            cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            print(f"frame {r.index}: fg={foreground_fraction(r.mask):.4f} -> {path}")
        else:
            if r.labels is None:
                print("model has a one-channel output: no label map", file=sys.stderr)
                return 2
            path = _out_path(args.out, r.index, is_video, "labels")
            cv2.imwrite(path, r.labels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            hist = np.bincount(r.labels.ravel()).tolist()
            print(f"frame {r.index}: class histogram {hist} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
