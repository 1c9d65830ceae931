#!/usr/bin/env python3
"""Build models/test_ffnet_tiny.onnx: a tiny, UNTRAINED stand-in for FFNet.

It has the input/output contract of the FFNet segmentation models of
Qualcomm AI Hub (Cityscapes, 19 classes) so that the multi-class path of the
plugin can be tested without the real weights:

- input  ``image``: float32 NCHW 1x3x128x256, RGB in [0,1];
  the ImageNet normalization (mean 0.485,0.456,0.406, std 0.229,0.224,0.225)
  is done inside the graph;
- output ``mask``:  float32 1x19x16x32 class logits (stride 8).

Graph: normalization -> 3x (conv3x3 stride 2 + ReLU) -> conv1x1 to 19 classes.
The weights are random (fixed seed, so the file is byte-identical on every
run), shaped by hand so that on real images the top-class map follows image
regions (see make_weights): colour detectors and random filters in the first
layer, smooth random channel mixes after it, a random classifier whose bias
centres each class over random colours. The seed was picked among a few so
that the map looks varied. The script checks that on messi5.jpg the top-class
map has at least 4 classes and no class covers more than 70% of it.

Built with onnx.helper + numpy only. How to run (from the repository root)::

    python3 -m venv /tmp/tm
    /tmp/tm/bin/pip install -r models/requirements-test-models.txt
    /tmp/tm/bin/python models/make_test_ffnet.py

The check image comes from Debian's ``opencv-doc`` package
(/usr/share/doc/opencv-doc/examples/data/messi5.jpg).
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 2
NUM_CLASSES = 19
IN_H, IN_W = 128, 256
OUT_H, OUT_W = IN_H // 8, IN_W // 8
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
CHANNELS = [3, 16, 24, 32]
OPSET = 17
IR_VERSION = 8  # opset 17 <-> IR 8: loads in any onnxruntime >= 1.13
MAX_SIZE = 300 * 1024
MIN_CLASSES = 4
MAX_SHARE = 0.70

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = "/usr/share/doc/opencv-doc/examples/data"
DOC = (
    "TEST MODEL, NOT TRAINED: random weights (numpy seed %d) with the FFNet / "
    "Qualcomm AI Hub segmentation contract, for tests of the multi-class path only; "
    "its output means nothing. Input 'image': float32 NCHW 1x3x%dx%d RGB in [0,1] "
    "(ImageNet mean/std normalization is inside the graph). Output 'mask': float32 "
    "1x%dx%dx%d class logits (stride 8). Made by models/make_test_ffnet.py."
    % (SEED, IN_H, IN_W, NUM_CLASSES, OUT_H, OUT_W)
)


def colour_features(weights, colours):
    """Features of the conv stack for flat images of the given RGB colours.

    On a flat image a 3x3 convolution is a matrix product with the kernels
    summed over their taps (borders aside), so this is exact in the interior.
    """
    f = (colours - np.array(MEAN)) / np.array(STD)
    for w, b in weights:
        f = np.maximum(f @ w.sum(axis=(2, 3)).T + b, 0.0)
    return f


def make_weights():
    """Random weights, shaped so that the class map follows image regions.

    Layer 1 mixes colour detectors (flat kernels over a random colour
    direction) with random 3x3 filters; layers 2 and 3 are random
    channel mixes applied through a smooth 3x3 kernel plus some noise, so the
    features mostly describe the (blurred) colour and a bit of texture. The
    1x1 classifier is random; its bias centres every class logit over
    uniformly random colours, so that no class wins everywhere. This uses no
    image: it only depends on the seed.
    """
    rng = np.random.default_rng(SEED)
    blur = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0])
    blur /= blur.sum()
    weights = []
    for i, (cin, cout) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:])):
        noise = rng.normal(0.0, np.sqrt(2.0 / (cin * 9)), size=(cout, cin, 3, 3))
        if i == 0:
            w = noise
            for c in range(cout // 2):
                colour = rng.normal(0.0, 1.0, size=cin)
                w[c] = (colour / np.linalg.norm(colour))[:, None, None] * (2.0 / 9.0)
        else:
            mix = rng.normal(0.0, np.sqrt(2.0 / cin), size=(cout, cin))
            w = mix[:, :, None, None] * blur + 0.1 * noise
        b = rng.normal(0.0, 0.3, size=(cout,))
        weights.append((w, b))
    cin = CHANNELS[-1]
    w = rng.normal(0.0, np.sqrt(1.0 / cin), size=(NUM_CLASSES, cin))
    feats = colour_features(weights, rng.random((8192, 3)))
    # Whiten the features over random colours before the random projection,
    # so every class direction matters, then centre each class logit.
    mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-3
    w = w / sd
    b = -(w @ mu)
    weights.append((w[:, :, None, None], b))
    return [(w.astype(np.float32), b.astype(np.float32)) for w, b in weights]


def build():
    inits = [
        numpy_helper.from_array(np.array(MEAN, np.float32).reshape(1, 3, 1, 1), "norm/mean"),
        numpy_helper.from_array(np.array(STD, np.float32).reshape(1, 3, 1, 1), "norm/std"),
    ]
    nodes = [
        helper.make_node("Sub", ["image", "norm/mean"], ["norm/centered"], name="norm/sub"),
        helper.make_node("Div", ["norm/centered", "norm/std"], ["norm/out"], name="norm/div"),
    ]
    x = "norm/out"
    weights = make_weights()
    for i, (w, b) in enumerate(weights[:-1], start=1):
        name = f"conv{i}"
        inits += [numpy_helper.from_array(w, f"{name}/W"), numpy_helper.from_array(b, f"{name}/B")]
        nodes.append(helper.make_node(
            "Conv", [x, f"{name}/W", f"{name}/B"], [f"{name}/out"], name=name,
            kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"{name}/out"], [f"{name}/relu"],
                                      name=f"{name}/relu"))
        x = f"{name}/relu"
    w, b = weights[-1]
    inits += [numpy_helper.from_array(w, "classifier/W"),
              numpy_helper.from_array(b, "classifier/B")]
    nodes.append(helper.make_node("Conv", [x, "classifier/W", "classifier/B"], ["mask"],
                                  name="classifier", kernel_shape=[1, 1]))

    graph = helper.make_graph(
        nodes, "test_ffnet_tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, IN_H, IN_W])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT,
                                       [1, NUM_CLASSES, OUT_H, OUT_W])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ffnetseg make_test_ffnet.py",
                              doc_string=DOC)
    model.ir_version = IR_VERSION
    for k, v in {"purpose": "test model, random weights, not trained",
                 "seed": str(SEED), "classes": str(NUM_CLASSES), "stride": "8"}.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model, full_check=True)
    return model


def preprocess(path):
    import cv2

    bgr = cv2.imread(path)
    if bgr is None:
        sys.exit(f"cannot read {path} (apt-get install opencv-doc)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (IN_W, IN_H), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray((rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])


def check(path):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    i, o = sess.get_inputs(), sess.get_outputs()
    print(f"onnxruntime {ort.__version__}: inputs {[(t.name, t.shape, t.type) for t in i]}, "
          f"outputs {[(t.name, t.shape, t.type) for t in o]}")
    assert [t.name for t in i] == ["image"] and i[0].shape == [1, 3, IN_H, IN_W]
    assert [t.name for t in o] == ["mask"] and o[0].shape == [1, NUM_CLASSES, OUT_H, OUT_W]

    ok = True
    for name in ["messi5.jpg", "basketball1.png", "fruits.jpg"]:
        img = os.path.join(DATA_DIR, name)
        if name != "messi5.jpg" and not os.path.exists(img):
            continue
        logits = sess.run(["mask"], {"image": preprocess(img)})[0]
        assert logits.shape == (1, NUM_CLASSES, OUT_H, OUT_W) and np.isfinite(logits).all()
        top = logits[0].argmax(axis=0)
        hist = np.bincount(top.ravel(), minlength=NUM_CLASSES)
        share = hist.max() / top.size
        used = int((hist > 0).sum())
        print(f"{name}: {used} classes in the top-class map, largest share {share:.3f}; "
              f"histogram {{{', '.join(f'{c}: {n}' for c, n in enumerate(hist) if n)}}}")
        if name == "messi5.jpg":
            for row in top:
                print("  " + "".join("0123456789abcdefghi"[c] for c in row))
            if used < MIN_CLASSES or share > MAX_SHARE:
                print(f"FAILED: want >= {MIN_CLASSES} classes and no class above "
                      f"{MAX_SHARE:.0%} on messi5.jpg")
                ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=os.path.join(HERE, "test_ffnet_tiny.onnx"))
    args = ap.parse_args()
    model = build()
    onnx.save(model, args.output)
    size = os.path.getsize(args.output)
    print(f"wrote {args.output} ({size} bytes)")
    if size > MAX_SIZE:
        print(f"FAILED: larger than {MAX_SIZE} bytes")
        return 1
    if not check(args.output):
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
