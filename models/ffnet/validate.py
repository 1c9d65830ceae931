#!/usr/bin/env python3
"""Numerics of a quantized model against its float32 original, on real validation images
that calibration never saw: --set valid (default; vtest.avi frames and opencv-doc photos,
mostly small, far pedestrians) or --set portrait (people close to the camera, the selfie
model's domain; see media.portrait_images).

    python models/ffnet/validate.py FP32.onnx QUANT.onnx --kind mask
    python models/ffnet/validate.py FP32.onnx QUANT.onnx --kind mask --set portrait --noise-floor
    python models/ffnet/validate.py FP32.onnx QUANT.onnx --kind logits
    python models/ffnet/validate.py FP32.onnx QUANT_qio.onnx --kind mask --provider qnn

QUANT may have quantized I/O (quantize.quantized_io): it is fed the integer input with its
own scale and zero point and its output is dequantized (Runner). --provider qnn runs QUANT on
the QNN EP (HTP backend: on x86-64 the onnxruntime-qnn wheel's simulator, seconds per frame).

--kind mask   (one-channel sigmoid models, e.g. the MediaPipe selfie model): masks
              thresholded at 0.55 (segpostproc's default); IoU of the foreground over all
              pixels of all images (sum of intersections / sum of unions), the mean of the
              per-image IoUs (images where both masks are empty count as 1), pixel
              agreement, and the mean |difference| of the probabilities.
--kind logits (multi-class logits, e.g. FFNet 1x19xHxW): top-class agreement (share of
              pixels whose argmax class is the same) and PSNR of the logits,
              10*log10(peak^2 / MSE) with peak = max |fp32 logit| of each image, averaged
              over images in dB.
--noise-floor the same metrics between two correct executions of the *same* quantized model:
              ONNX Runtime with all graph optimizations (fused integer kernels) vs none
              (every Q/DQ pair literally, in float). A gap to FP32 of the size of this
              disagreement is implementation noise, not a property of the quantization.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import media  # noqa: E402

THRESHOLD = 0.55


def _session(path, threads, optimize: bool = True, provider: str = "cpu", options=None):
    if provider == "qnn":
        import qnn

        return qnn.session(path, options)
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class Runner:
    """One model in one ONNX Runtime session, fed float [0,1] images and giving float scores,
    whatever its I/O: a quantized-I/O model (quantize.quantized_io) gets the integer input the
    removed QuantizeLinear would have made (its scale and zero point read from the model as
    ffnetinfer reads them, quantize.io_quantization) and its integer output is dequantized.
    ``provider``: "cpu" or "qnn" (QNN EP, HTP backend: the simulator on x86-64)."""

    def __init__(self, path, threads: int = 0, optimize: bool = True, provider: str = "cpu",
                 options=None):
        import quantize as Q

        self.session = _session(path, threads, optimize, provider, options)
        self.name = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.io = Q.io_quantization(path)

    def run(self, x):
        import quantize as Q

        i, o = self.io["input"], self.io["output"]
        if i:
            x = Q.quantize_input(x, i["scale"], i["zero_point"], np.dtype(i["dtype"]))
        y = self.session.run([self.output], {self.name: x})[0]
        return Q.dequantize_output(y, o["scale"], o["zero_point"]) if o else y


def run_pair(fp32: str, quant: str, images, threads: int = 0, provider: str = "cpu",
             ref_provider: str = "cpu", options=None, optimize: bool = True):
    """Yield (reference output, quantized output) per image (both float scores; see Runner).
    ``provider`` runs ``quant``, ``ref_provider`` runs ``fp32`` (the reference: FP32, or the
    float-I/O quantized model when judging a quantized-I/O one). ``optimize`` False runs
    ``quant`` without graph optimizations: its Q/DQ nodes as float operations, the
    quantization's own numerics, the same on every CPU (the fused int8 kernels of the CPU EP
    differ between CPUs: with AVX2 but no VNNI they lose precision)."""
    name, shape, layout = media.input_contract(fp32)
    name_q, shape_q, layout_q = media.input_contract(quant)
    if (name, list(shape), layout) != (name_q, list(shape_q), layout_q):
        raise ValueError(f"input contracts differ: {fp32} {name}{shape} vs {quant} {name_q}{shape_q}")
    a = Runner(fp32, threads, provider=ref_provider)
    b = Runner(quant, threads, optimize=optimize, provider=provider, options=options)
    for img in images:
        x = media.to_input(img, shape, layout)
        yield a.run(x), b.run(x)


def run_same_model(quant: str, images, threads: int = 0):
    """Yield (output with ORT_ENABLE_ALL, output with ORT_DISABLE_ALL) of one model per image."""
    name, shape, layout = media.input_contract(quant)
    a, b = Runner(quant, threads), Runner(quant, threads, optimize=False)
    for img in images:
        x = media.to_input(img, shape, layout)
        yield a.run(x), b.run(x)


def mask_metrics(pairs, threshold: float = THRESHOLD) -> dict:
    inter = union = agree = total = 0
    ious, mad = [], []
    fg = 0
    for p, q in pairs:
        mp, mq = p > threshold, q > threshold
        i = int(np.logical_and(mp, mq).sum())
        u = int(np.logical_or(mp, mq).sum())
        inter += i
        union += u
        ious.append(i / u if u else 1.0)
        agree += int((mp == mq).sum())
        total += mp.size
        fg += int(mp.sum())
        mad.append(float(np.abs(p - q).mean()))
    return {
        "images": len(ious),
        "iou": inter / union if union else 1.0,
        "mean_image_iou": float(np.mean(ious)),
        "min_image_iou": float(np.min(ious)),
        "pixel_agreement": agree / total,
        "foreground_share_fp32": fg / total,
        "mean_abs_prob_diff": float(np.mean(mad)),
        "threshold": threshold,
    }


def logits_metrics(pairs) -> dict:
    agree = total = 0
    psnrs = []
    for p, q in pairs:
        p = p.astype(np.float64)
        q = q.astype(np.float64)
        agree += int((p.argmax(1) == q.argmax(1)).sum())
        total += p.shape[0] * p.shape[2] * p.shape[3]
        mse = float(np.mean((p - q) ** 2))
        peak = float(np.abs(p).max())
        psnrs.append(10 * np.log10(peak**2 / mse) if mse > 0 else float("inf"))
    return {"images": len(psnrs), "top_class_agreement": agree / total,
            "psnr_db": float(np.mean(psnrs)), "min_psnr_db": float(np.min(psnrs))}


def validate(fp32: str, quant: str, kind: str, images, threads: int = 0, provider: str = "cpu",
             options=None, optimize: bool = True) -> dict:
    pairs = run_pair(fp32, quant, images, threads, provider=provider, options=options,
                     optimize=optimize)
    return mask_metrics(pairs) if kind == "mask" else logits_metrics(pairs)


def io_agreement(float_io: str, quant_io: str, kind: str, images, threads: int = 0,
                 provider: str = "cpu", ref_provider: str = "cpu", options=None) -> dict:
    """How the quantized-I/O model ``quant_io`` agrees with the float-I/O quantized model
    ``float_io`` it was made from (quantize.quantized_io). Both get the same float image, the
    former as the integer tensor the removed QuantizeLinear would have made. Returns
    validate()'s metrics between the two plus the largest score difference in output
    quantization steps ("max_diff_steps") and the share of scores that are equal
    ("equal_share")."""
    import quantize as Q

    step = Q.io_quantization(quant_io)["output"]["scale"]
    diffs, equal, total = [], 0, 0

    def pairs():
        nonlocal equal, total
        for p, q in run_pair(float_io, quant_io, images, threads, provider, ref_provider, options):
            d = np.abs(p.astype(np.float64) - q.astype(np.float64)) / step
            diffs.append(float(d.max()))
            equal += int((d < 1e-3).sum())
            total += d.size
            yield p, q

    r = mask_metrics(pairs()) if kind == "mask" else logits_metrics(pairs())
    r.update(max_diff_steps=max(diffs), equal_share=equal / total, output_step=step,
             provider=provider, reference_provider=ref_provider)
    return r


def noise_floor(quant: str, kind: str, images, threads: int = 0) -> dict:
    """validate()'s metrics between two correct executions of the same quantized model
    (ORT graph optimizations all vs none, CPU EP); foreground_share_fp32 is then that of the
    optimized run."""
    pairs = run_same_model(quant, images, threads)
    return mask_metrics(pairs) if kind == "mask" else logits_metrics(pairs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fp32")
    ap.add_argument("quant")
    ap.add_argument("--kind", choices=("mask", "logits"), required=True)
    ap.add_argument("--video-frames", type=int, default=12)
    ap.add_argument("--photos", type=int, default=len(media.VALID_IMAGES))
    ap.add_argument("--set", choices=("valid", "portrait"), default="valid",
                    help="validation set (--video-frames/--photos apply to valid only)")
    ap.add_argument("--noise-floor", action="store_true",
                    help="also report the same-model noise floor (ORT optimized vs unoptimized)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--provider", choices=("cpu", "qnn"), default="cpu",
                    help="runs QUANT (qnn: QNN EP HTP backend, the simulator on x86-64; FP32 "
                         "stays on the CPU EP)")
    ap.add_argument("--qnn-options", default="", help="QNN provider options k=v,... (htp_arch=68)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    imgs = media.image_set(a.set, n_video=a.video_frames, n_photos=a.photos)
    r = validate(a.fp32, a.quant, a.kind, imgs, a.threads, a.provider, a.qnn_options or None)
    r["set"] = a.set
    if a.noise_floor:
        r["noise_floor"] = noise_floor(a.quant, a.kind, imgs, a.threads)
    print(json.dumps(r, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
