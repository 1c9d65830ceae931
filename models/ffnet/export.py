#!/usr/bin/env python3
"""Export (graph-capture) an FFNet variant to ONNX with Qualcomm AI Hub's contract.

    input  'image': float32 1x3xHxW, RGB in [0,1]; ImageNet mean/std normalisation is
                    inside the graph (do not normalise again in segpreproc);
    output 'mask' : float32 1x19x(H/8)x(W/8) Cityscapes logits (no softmax).

Static shapes; any H, W that are multiples of 8 (AI Hub: 1024x2048 for ffnet_40s/54s/78s,
512x1024 for the LowRes variants; 224x224 works too). --dynamic-batch makes the batch
dimension symbolic ("batch": N frames in, N score maps out), for ffnetinfer's shared
instances (shared-instance=NAME batch-size=N).

    python models/ffnet/export.py --variant ffnet_40s --out out/models/ffnet_40s.onnx
    python models/ffnet/export.py --variant ffnet_78s_lowres --height 224 --width 224 \\
        --weights ffnet78S_BCC_cityscapes_state_dict_quarts_pre_down.pth --out x.onnx

Without --weights the model is UNTRAINED (seeded random weights; BatchNorm statistics set
from a few real frames so that activations have realistic ranges): its output means
nothing, it is good for speed, size and quantization-mechanics work only. The script says so
loudly, and writes it into the ONNX doc string and metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ffnet as F  # noqa: E402

OPSET = 17  # QNN EP, ORT >= 1.13 and the plugin's ort all take it; 16-bit QDQ then uses
#             the com.microsoft Q/DQ ops, which QNN EP accepts too.
BN_CALIB_SIZE = (256, 512)  # resolution at which untrained models' BN statistics are set

UNTRAINED_BANNER = """
############################################################################
#  UNTRAINED MODEL: {variant} has RANDOM weights (seed {seed}).
#  No --weights given. Its segmentation output is MEANINGLESS.
#  Use it for speed, size and quantization-mechanics work only.
#  For real masks pass --weights <official Cityscapes state dict>
#  (Qualcomm-AI-research/FFNet: {ckpt}).
############################################################################
"""


def untrained_model(variant: str, seed: int = 0, bn_frames: int = 4) -> F.FFNet:
    """Seeded random weights, BN statistics from real frames (deterministic)."""
    import media

    torch.manual_seed(seed)
    model = F.build(variant, weights=None, seed=seed)
    imgs = media.image_set("calib", n_video=bn_frames, n_photos=bn_frames)
    h, w = BN_CALIB_SIZE
    mean = torch.tensor(F.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(F.IMAGENET_STD).view(1, 3, 1, 1)
    batch = torch.cat([torch.from_numpy(media.to_input(im, (1, 3, h, w), "nchw"))
                       for im in imgs])
    batch = (batch - mean) / std
    F.calibrate_bn(model, [batch])
    return model.eval()


def capture(module: torch.nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool = False):
    """Graph capture to an in-memory ONNX model with static shapes (or a symbolic batch).

    torch.export-based exporter (dynamo=True) first: it gives a clean static graph
    (Conv, Relu, Add, Resize, Concat, Slice, Sub, Div; BN folded into the convs). If that
    fails (older torch, missing onnxscript) the TorchScript exporter is used, and ONNX
    Runtime's basic optimiser folds its shape arithmetic into constants."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import logging

                logging.getLogger("torch.onnx").setLevel(logging.ERROR)
                dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
                torch.onnx.export(module, (x,), path, input_names=["image"],
                                  output_names=["mask"], opset_version=opset, dynamo=True,
                                  verbose=False, external_data=True, dynamic_shapes=dynamic)
            return onnx.load(path)  # pulls the external weights in
        except Exception as e:  # noqa: BLE001 - fall back to the TorchScript exporter
            print(f"note: dynamo exporter failed ({type(e).__name__}: {e}); "
                  "using the TorchScript exporter", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = {"image": {0: "batch"}, "mask": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(module, (x,), path, input_names=["image"], output_names=["mask"],
                              opset_version=opset, dynamo=False, do_constant_folding=True,
                              dynamic_axes=axes)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath)


def export(model: F.FFNet, out: str, height: int, width: int, trained: bool,
           opset: int = OPSET, check: bool = True, dynamic_batch: bool = False) -> dict:
    """Capture ``model`` (wrapped with the normalisation) to ``out``; with ``dynamic_batch``
    the batch dimension is symbolic (checked on a batch of 2). Returns facts."""
    import onnx

    if height % 8 or width % 8:
        raise SystemExit(f"--height/--width must be multiples of 8 (got {height}x{width})")
    wrapped = F.Normalized(model).eval()
    n = 2 if dynamic_batch else 1
    x = torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(1))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    m = capture(wrapped, x, opset, dynamic_batch)
    v = model.variant
    status = "trained (official weights)" if trained else (
        "UNTRAINED: random weights, output meaningless; for speed work only")
    b = "N" if dynamic_batch else "1"
    m.doc_string = (
        f"{v.title} ({v.official_name}), {status}. Input 'image' float32 NCHW "
        f"{b}x3x{height}x{width} RGB [0,1], ImageNet normalisation inside. Output 'mask' "
        f"float32 {b}x19x{height // 8}x{width // 8} Cityscapes logits. "
        "Made by models/ffnet/export.py.")
    meta = {"variant": v.name, "trained": "yes" if trained else "no",
            "classes": ",".join(F.CITYSCAPES_CLASSES), "normalization": "imagenet-inside"}
    del m.metadata_props[:]
    for k, val in meta.items():
        m.metadata_props.add(key=k, value=val)
    m.producer_name = "ffnetseg models/ffnet/export.py"
    onnx.checker.check_model(m)
    onnx.save(m, out)
    facts = {"path": out, "bytes": os.path.getsize(out)}
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
        got = sess.run(["mask"], {"image": x.numpy()})[0]
        with torch.no_grad():
            ref = wrapped(x).numpy()
        if got.shape != (n, F.NUM_CLASSES, height // 8, width // 8):
            raise RuntimeError(f"exported output shape {got.shape}, expected {n}x19x{height//8}x{width//8}")
        err = float(np.abs(got - ref).max())
        scale = float(np.abs(ref).max()) or 1.0
        if err > 1e-3 * scale + 1e-4:
            raise RuntimeError(f"ONNX Runtime and PyTorch disagree: max |diff| {err} (scale {scale})")
        facts["max_abs_diff_vs_torch"] = err
    return facts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", required=True, choices=sorted(F.VARIANTS))
    ap.add_argument("--height", type=int, help="input height (default: AI Hub's)")
    ap.add_argument("--width", type=int, help="input width (default: AI Hub's)")
    ap.add_argument("--weights", help="official Cityscapes state dict (.pth) in the key layout of "
                    "Qualcomm-AI-research/FFNet")
    ap.add_argument("--out", required=True, help="output .onnx")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights (untrained)")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    ap.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension")
    a = ap.parse_args(argv)
    v = F.VARIANTS[a.variant]
    h, w = a.height or v.height, a.width or v.width
    torch.set_grad_enabled(False)
    if a.weights:
        model = F.build(a.variant, weights=a.weights)
        print(f"{v.title}: loaded official weights from {a.weights}")
    else:
        print(UNTRAINED_BANNER.format(variant=a.variant, seed=a.seed, ckpt=v.checkpoint),
              file=sys.stderr, flush=True)
        model = untrained_model(a.variant, seed=a.seed)
    facts = export(model, a.out, h, w, trained=bool(a.weights), opset=a.opset,
                   check=not a.no_check, dynamic_batch=a.dynamic_batch)
    print(f"wrote {a.out}: {v.title} {h}x{w} -> mask 1x19x{h // 8}x{w // 8}, "
          f"{F.count_params(model) / 1e6:.2f} M parameters, {facts['bytes'] / 1e6:.1f} MB"
          + (f", ORT vs torch max |diff| {facts['max_abs_diff_vs_torch']:.2e}"
             if "max_abs_diff_vs_torch" in facts else "")
          + ("" if a.weights else "  [UNTRAINED]"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
