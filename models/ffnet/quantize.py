#!/usr/bin/env python3
"""Post-training static quantization (PTQ) of an image model to a QDQ ONNX model for the
QNN HTP backend (Snapdragon NPU) with ONNX Runtime's quantization tools.

    python models/ffnet/quantize.py MODEL.onnx --scheme w8a8  --out MODEL_w8a8.onnx
    python models/ffnet/quantize.py MODEL.onnx --scheme w8a16 --out MODEL_w8a16.onnx

Schemes (both: QDQ format, weights int8 symmetric per output channel, biases int32,
activations asymmetric, MinMax calibration):

    w8a8   activations uint8   (ORT's CPU EP fuses these into integer kernels too)
    w8a16  activations uint16  (com.microsoft QuantizeLinear/DequantizeLinear, which QNN
                                EP takes; ONNX Runtime also raises the model's opset to 21.
                                ORT's CPU EP has no 16-bit integer kernels, so on a CPU it
                                is *slower* than fp32: it is a format for the NPU)

The settings come from onnxruntime.quantization.execution_providers.qnn.get_qnn_qdq_config,
which adds the QNN-specific overrides (e.g. fixed Sigmoid output ranges for 16-bit), and
onnxruntime.quantization.quantize (i.e. quantize_static).

Calibration uses real images, never noise: vtest.avi frames and opencv-doc photos
(media.image_set("calib")), resized to the model input (its layout and size are read from
the ONNX file: NCHW FFNet with ImageNet normalisation inside, NHWC selfie model, ...), RGB
scaled to [0,1] as the AI Hub contract says.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import media  # noqa: E402

SCHEMES = ("w8a8", "w8a16")


class FrameReader:  # noqa: D101 (duck-typed CalibrationDataReader)
    """onnxruntime CalibrationDataReader over real images."""

    def __init__(self, model_path: str, images):
        self.name, self.shape, self.layout = media.input_contract(model_path)
        self.images = list(images)
        self.i, self.end = 0, len(self.images)

    def get_next(self):
        if self.i >= self.end:
            return None
        x = media.to_input(self.images[self.i], self.shape, self.layout)
        self.i += 1
        return {self.name: x}

    def set_range(self, start_index: int, end_index: int):
        """Used by quantize_static's strided calibration (CalibStridedMinMax)."""
        self.i, self.end = start_index, min(end_index, len(self.images))

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def rewind(self):
        self.i, self.end = 0, len(self.images)

    def __len__(self):
        return len(self.images)


SIGMOID_LOGIT_RANGE = 8.0  # sigmoid(8) = 0.99966: wider logits change no probability


def sigmoid_logit_overrides(model_path: str) -> dict:
    """Range overrides for the logits in front of an output Sigmoid.

    A sigmoid head's logits span hundreds (the selfie model's: -1060..316), so MinMax gives
    them an 8-bit step of ~5, which moves every probability near the 0.55 threshold to ~0 or
    ~1. Past +-8 the sigmoid is flat (changes < 3.4e-4), so their range is set to [-8, 8]:
    the step becomes 0.063 and the quantized probabilities stay within ~0.008. The override
    follows data-movement ops (Transpose, Reshape) between the producing op and the Sigmoid.
    """
    import numpy as np
    import onnx

    g = onnx.load(model_path, load_external_data=False).graph
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    tensors = []
    for n in g.node:
        if n.op_type == "Sigmoid" and n.output[0] in outputs:
            t = n.input[0]
            while True:
                tensors.append(t)
                p = producer.get(t)
                if p is None or p.op_type not in ("Transpose", "Reshape", "Squeeze", "Unsqueeze"):
                    break
                t = p.input[0]
    r = SIGMOID_LOGIT_RANGE
    return {t: [{"rmin": np.array(-r, dtype=np.float32), "rmax": np.array(r, dtype=np.float32)}]
            for t in tensors}


def quantize(model_in: str, model_out: str, scheme: str, images):
    """Quantize ``model_in`` to ``model_out``; ``images``: RGB uint8 calibration images."""
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization import quantize as ort_quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}")
    act = QuantType.QUInt8 if scheme == "w8a8" else QuantType.QUInt16
    reader = FrameReader(model_in, images)
    cfg = get_qnn_qdq_config(
        model_in,
        reader,
        calibrate_method=CalibrationMethod.MinMax,
        activation_type=act,
        weight_type=QuantType.QInt8,
        per_channel=True,
        init_overrides=sigmoid_logit_overrides(model_in) or None,
        # Calibrate one image at a time, merging min/max ranges as it goes: the calibrator
        # otherwise keeps every intermediate tensor of every image in memory (a 1024x2048
        # FFNet has about a gigabyte of them per image). (CalibMaxIntermediateOutputs is no
        # help: in onnxruntime 1.32 it drops the collected data without merging it.)
        stride=1,
    )
    os.makedirs(os.path.dirname(os.path.abspath(model_out)), exist_ok=True)
    t = time.time()
    ort_quantize(model_in, model_out, cfg)
    return {"seconds": time.time() - t, "calibration_images": len(reader),
            "overrides": sorted(cfg.extra_options.get("TensorQuantOverrides", {}))}


def qdq_summary(path: str) -> dict:
    """Counts of QuantizeLinear / DequantizeLinear nodes and the activation/weight types."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    act_types, weight_types = set(), set()
    names = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32"}
    for n in q:  # activations: zero point type of QuantizeLinear
        if len(n.input) > 2 and n.input[2] in inits:
            act_types.add(names.get(inits[n.input[2]].data_type, "?"))
    for n in dq:  # weights: DequantizeLinear fed by an integer initializer
        if n.input[0] in inits and inits[n.input[0]].data_type in (2, 3, 4, 5):
            weight_types.add(names[inits[n.input[0]].data_type])
    return {"quantize": len(q), "dequantize": len(dq), "activations": sorted(act_types),
            "weights": sorted(weight_types),
            "domains": sorted({n.domain or "ai.onnx" for n in q + dq})}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="float32 ONNX model with one static 4-D image input")
    ap.add_argument("--scheme", choices=SCHEMES, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--video-frames", type=int, default=12,
                    help="vtest.avi frames used for calibration (every 60th frame)")
    ap.add_argument("--photos", type=int, default=8,
                    help="opencv-doc photos used for calibration (at most %d)" % len(media.CALIB_IMAGES))
    a = ap.parse_args(argv)
    imgs = media.image_set("calib", n_video=a.video_frames, n_photos=a.photos)
    info = quantize(a.model, a.out, a.scheme, imgs)
    s = qdq_summary(a.out)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB, was "
          f"{os.path.getsize(a.model) / 1e6:.1f} MB): {a.scheme}, {s['quantize']} Q / "
          f"{s['dequantize']} DQ nodes, activations {s['activations']}, weights "
          f"{s['weights']}; calibrated on {info['calibration_images']} real images in "
          f"{info['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
