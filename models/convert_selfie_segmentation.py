#!/usr/bin/env python3
"""Convert MediaPipe's selfie segmentation model (TFLite) to ONNX.

Produces ``models/selfie_segmentation.onnx`` from the real, trained MediaPipe
model ``selfie_segmentation.tflite`` (Apache-2.0, see
``models/selfie_segmentation.LICENSE.md``), which is shipped inside the PyPI
wheel ``mediapipe==0.10.14`` at
``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite``
(the general 256x256 model, not the landscape one).

How to run (from the repository root; needs only PyPI, no other network)::

    python3 -m venv /tmp/cv
    /tmp/cv/bin/pip install -r models/requirements-convert.txt
    /tmp/cv/bin/python models/convert_selfie_segmentation.py

The test images come from Debian's ``opencv-doc`` package
(``apt-get install opencv-doc``; /usr/share/doc/opencv-doc/examples/data).

What it does:

1. ``pip download --no-deps`` the mediapipe 0.10.14 wheel (always the
   cp311 manylinux x86_64 one, whatever the host, so the input is fixed) and
   extracts the .tflite from it; its SHA-256 is checked.
2. Converts it with tf2onnx (opset 17, HardSwish needs >= 14).
3. tf2onnx cannot convert MediaPipe's custom op ``Convolution2DTransposeBias``
   (the final 2x upsampling: weights OHWI [1,2,2,16], bias [1], kernel 2x2,
   stride 2, SAME padding). It is left as an unknown node, which this script
   replaces by a standard ONNX ``ConvTranspose`` (weights IOHW [16,1,2,2])
   working in NCHW, followed by a Transpose back to NHWC.
4. Renames the graph input to ``image`` (float32 1x256x256x3, RGB in [0,1])
   and the output to ``mask`` (float32 1x256x256x1, sigmoid probability of
   "person").
5. Checks the ONNX model (onnxruntime) against the TFLite interpreter on
   several real images and exits non-zero if the max abs difference exceeds
   1e-3. Also prints the foreground fraction on messi5.jpg.
"""

import argparse
import glob
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

MEDIAPIPE_VERSION = "0.10.14"
TFLITE_PATH_IN_WHEEL = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
TFLITE_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
CUSTOM_OP = "Convolution2DTransposeBias"
OPSET = 17
TOLERANCE = 1e-3
INPUT_NAME = "image"
OUTPUT_NAME = "mask"

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = "/usr/share/doc/opencv-doc/examples/data"
TEST_IMAGES = ["messi5.jpg", "basketball1.png", "basketball2.png"]
TEST_VIDEO = "vtest.avi"
TEST_VIDEO_FRAMES = [0, 150, 300, 450, 600]


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------
# 1. Fetch the .tflite
# --------------------------------------------------------------------------
def fetch_tflite(workdir, wheel=None):
    if wheel is None:
        wheel_dir = os.path.join(workdir, "wheel")
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps",
            "--only-binary=:all:",
            "--platform", "manylinux_2_17_x86_64",
            "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            f"mediapipe=={MEDIAPIPE_VERSION}", "-d", wheel_dir,
        ]
        log("+", " ".join(cmd))
        subprocess.run(cmd, check=True)
        wheels = glob.glob(os.path.join(wheel_dir, f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
        if len(wheels) != 1:
            sys.exit(f"expected one mediapipe wheel in {wheel_dir}, found {wheels}")
        wheel = wheels[0]
    log("wheel:", wheel)
    with zipfile.ZipFile(wheel) as z:
        data = z.read(TFLITE_PATH_IN_WHEEL)
    digest = hashlib.sha256(data).hexdigest()
    if digest != TFLITE_SHA256:
        sys.exit(f"unexpected SHA-256 of {TFLITE_PATH_IN_WHEEL}: {digest} (want {TFLITE_SHA256})")
    out = os.path.join(workdir, "selfie_segmentation.tflite")
    with open(out, "wb") as f:
        f.write(data)
    log(f"tflite: {out} ({len(data)} bytes, sha256 {digest})")
    return out


# --------------------------------------------------------------------------
# 2./3. Convert and patch
# --------------------------------------------------------------------------
def read_custom_op_options(tflite_path):
    """Return (padding, stride_w, stride_h) of the custom op from the flatbuffer.

    The custom options are a raw TfLiteTransposeConvParams struct:
    {TfLitePadding padding; int stride_width; int stride_height;}
    (padding: 1 = SAME, 2 = VALID).
    """
    from tf2onnx.tflite.Model import Model

    buf = open(tflite_path, "rb").read()
    model = Model.GetRootAsModel(buf, 0)
    found = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex()).CustomCode()
            if code is not None and code.decode() == CUSTOM_OP:
                opts = np.frombuffer(op.CustomOptionsAsNumpy().tobytes(), dtype="<i4")
                found.append(tuple(int(v) for v in opts[:3]))
    if len(found) != 1:
        sys.exit(f"expected exactly one {CUSTOM_OP} op in the tflite, found {len(found)}")
    return found[0]


def canonicalize(model):
    """Make the tf2onnx output reproducible.

    tf2onnx's optimizer iterates over sets of node objects, so from run to run
    it leaves a different number of no-op Reshapes and different generated
    tensor names (``foo__123:0``). Drop the Reshapes that do not change the
    shape, order the nodes by a post-order walk from the output and give
    every tensor and initializer a name derived from the TF layer names, so
    reruns write a byte-identical file.
    """
    import onnx
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    shapes = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    # 1. drop Reshapes that do not change the shape
    rename = {}
    keep = []
    outs = {o.name for o in g.output}
    for n in g.node:
        if n.op_type == "Reshape" and n.input[1] in inits and n.output[0] not in outs:
            target = numpy_helper.to_array(inits[n.input[1]]).tolist()
            if shapes.get(n.input[0]) == target:
                rename[n.output[0]] = n.input[0]
                continue
        keep.append(n)
    def res(x):
        while x in rename:
            x = rename[x]
        return x
    for n in keep:
        for i, x in enumerate(n.input):
            n.input[i] = res(x)
    # 2. deterministic order: post-order DFS from the outputs
    prod = {o: n for n in keep for o in n.output}
    order, seen = [], set()
    def visit(n):
        if id(n) in seen:
            return
        seen.add(id(n))
        for x in n.input:
            if x in prod:
                visit(prod[x])
        order.append(n)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for o in g.output:
        visit(prod[o.name])
    # 3. deterministic names
    fixed = {i.name for i in g.input} | outs
    newname, used = {}, set(fixed)
    for n in order:
        for o in n.output:
            if o in fixed:
                newname[o] = o
                continue
            # tf2onnx-generated names ("conv2d__59:0", "add__xeno_compat__1")
            # carry run-dependent counters: name them after the layer + op.
            base = re.sub(r"__xeno_compat__\d+$", "", o)
            if base == o:
                base = re.sub(r"(__\d+)?(:\d+)?$", "", o)
                if base != o:
                    base = f"{base}/{n.op_type}"
            name, k = base, 1
            while name in used:
                k += 1
                name = f"{base}#{k}"
            used.add(name)
            newname[o] = name
    new_inits, init_name = [], {}
    for n in order:
        for i, x in enumerate(n.input):
            if x in inits:
                if x not in init_name:
                    nm = f"{newname[n.output[0]]}/in{i}"
                    init_name[x] = nm
                    t = onnx.TensorProto()
                    t.CopyFrom(inits[x])
                    t.name = nm
                    new_inits.append(t)
                n.input[i] = init_name[x]
            elif x in newname:
                n.input[i] = newname[x]
        for j, o in enumerate(n.output):
            n.output[j] = newname[o]
        n.name = n.output[0]
    del g.node[:]
    g.node.extend(order)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del g.value_info[:]
    return model


def convert(tflite_path):
    import onnx
    import tf2onnx
    from onnx import helper, numpy_helper

    padding, stride_w, stride_h = read_custom_op_options(tflite_path)
    log(f"{CUSTOM_OP} options: padding={'SAME' if padding == 1 else padding} "
        f"stride=({stride_h},{stride_w})")

    log(f"tf2onnx {tf2onnx.__version__}: converting (opset {OPSET}); "
        f"an error about the unsupported op {CUSTOM_OP} is expected")
    model, _ = tf2onnx.convert.from_tflite(tflite_path, opset=OPSET)
    graph = model.graph

    custom = [n for n in graph.node if n.op_type.endswith(CUSTOM_OP)]
    if len(custom) != 1:
        sys.exit(f"expected one {CUSTOM_OP} node in the tf2onnx output, found {len(custom)}")
    custom = custom[0]
    others = [n.op_type for n in graph.node if n is not custom
              and (n.domain not in ("", "ai.onnx") or n.op_type.startswith("TFL_"))]
    if others:
        sys.exit(f"unexpected non-standard ops left by tf2onnx: {others}")

    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}

    def const_value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        sys.exit(f"input {name} of {CUSTOM_OP} is not a constant")

    x_nhwc, w_name, b_name = custom.input
    w_ohwi = const_value(w_name).astype(np.float32)
    bias = const_value(b_name).astype(np.float32)
    c_out, k_h, k_w, c_in = w_ohwi.shape
    if bias.shape != (c_out,):
        sys.exit(f"bias shape {bias.shape} does not match weights {w_ohwi.shape}")
    log(f"{CUSTOM_OP} weights OHWI {list(w_ohwi.shape)}, bias {list(bias.shape)}")
    # ONNX ConvTranspose weights: (C_in, C_out/group, kH, kW).
    w_iohw = np.ascontiguousarray(w_ohwi.transpose(3, 0, 1, 2))

    # Padding: with SAME, out = in * stride and the total padding is
    # (in - 1) * stride + k - out = k - stride (0 here: 2x2 kernel, stride 2).
    if padding == 1:
        pads_h, pads_w = max(0, k_h - stride_h), max(0, k_w - stride_w)
    elif padding == 2:
        pads_h = pads_w = 0
    else:
        sys.exit(f"unknown padding {padding}")
    pads = [pads_h // 2, pads_w // 2, pads_h - pads_h // 2, pads_w - pads_w // 2]

    # Feed the ConvTranspose with NCHW data: reuse the tensor that tf2onnx
    # transposed to NHWC for the custom op if there is one, else transpose.
    new_nodes = []
    prod = producers.get(x_nhwc)
    if prod is not None and prod.op_type == "Transpose" and \
            list(helper.get_attribute_value(prod.attribute[0])) == [0, 2, 3, 1]:
        x_nchw = prod.input[0]
    else:
        x_nchw = x_nhwc + "__nchw"
        new_nodes.append(helper.make_node("Transpose", [x_nhwc], [x_nchw],
                                          name=x_nchw, perm=[0, 3, 1, 2]))
    seg = custom.output[0]
    wt = seg + "/ConvTranspose/W"
    bt = seg + "/ConvTranspose/B"
    graph.initializer.extend([numpy_helper.from_array(w_iohw, wt),
                              numpy_helper.from_array(bias, bt)])
    new_nodes.append(helper.make_node(
        "ConvTranspose", [x_nchw, wt, bt], [seg + "__nchw"], name=seg + "/ConvTranspose",
        kernel_shape=[k_h, k_w], strides=[stride_h, stride_w], pads=pads))
    new_nodes.append(helper.make_node("Transpose", [seg + "__nchw"], [seg],
                                      name=seg + "/to_nhwc", perm=[0, 2, 3, 1]))

    idx = list(graph.node).index(custom)
    nodes = list(graph.node)
    nodes[idx:idx + 1] = new_nodes
    del graph.node[:]
    graph.node.extend(nodes)

    # Remove nodes / initializers that are no longer used.
    graph_outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | graph_outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)

    # Rename graph input / output.
    if len(graph.input) != 1 or len(graph.output) != 1:
        sys.exit("expected a single input and a single output")
    renames = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name in renames:
                n.input[i] = renames[name]
        for i, name in enumerate(n.output):
            if name in renames:
                n.output[i] = renames[name]
    graph.input[0].name = INPUT_NAME
    graph.output[0].name = OUTPUT_NAME

    # Only the standard domain is needed.
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(keep)

    graph.name = "selfie_segmentation"
    model.producer_name = "ffnetseg convert_selfie_segmentation.py"
    model.producer_version = f"tf2onnx {tf2onnx.__version__}"
    model.doc_string = (
        "MediaPipe selfie segmentation (general, 256x256), from mediapipe=="
        f"{MEDIAPIPE_VERSION} ({TFLITE_PATH_IN_WHEEL}), Apache-2.0. Converted to ONNX "
        f"with tf2onnx; custom op {CUSTOM_OP} replaced by ConvTranspose; tensors renamed. "
        "Input 'image': float32 NHWC 1x256x256x3 RGB in [0,1]. "
        "Output 'mask': float32 NHWC 1x256x256x1, sigmoid person probability.")
    for k, v in {"source": f"https://github.com/google-ai-edge/mediapipe (PyPI mediapipe=="
                           f"{MEDIAPIPE_VERSION}, {TFLITE_PATH_IN_WHEEL})",
                 "source_sha256": TFLITE_SHA256,
                 "license": "Apache-2.0"}.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v

    # Shapes must stay static.
    for vi, want in ((graph.input[0], [1, 256, 256, 3]), (graph.output[0], [1, 256, 256, 1])):
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in vi.type.tensor_type.shape.dim]
        if dims != want or vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            sys.exit(f"{vi.name}: unexpected shape {dims}")

    model = canonicalize(model)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------
# 5. Check against TFLite
# --------------------------------------------------------------------------
def load_test_images():
    import cv2

    images, missing = [], []
    for name in TEST_IMAGES:
        path = os.path.join(DATA_DIR, name)
        img = cv2.imread(path) if os.path.exists(path) else None
        if img is None:
            missing.append(path)
        else:
            images.append((name, img))
    vpath = os.path.join(DATA_DIR, TEST_VIDEO)
    cap = cv2.VideoCapture(vpath)
    for idx in TEST_VIDEO_FRAMES:
        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, frame = cap.read()
        if ok:
            images.append((f"{TEST_VIDEO}#{idx}", frame))
        else:
            missing.append(f"{vpath} frame {idx}")
    cap.release()
    if missing:
        log("missing test inputs (apt-get install opencv-doc):", *missing, sep="\n  ")
    if len(images) < 3:
        sys.exit("fewer than 3 real test images available: cannot verify the conversion")
    return images


def preprocess(bgr):
    import cv2

    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_LINEAR)
    return (rgb.astype(np.float32) / 255.0)[None]


def verify(tflite_path, onnx_path):
    import onnxruntime as ort
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=tflite_path)
    interp.allocate_tensors()
    t_in = interp.get_input_details()[0]["index"]
    t_out = interp.get_output_details()[0]["index"]

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    log(f"onnxruntime {ort.__version__}: inputs {[(i.name, i.shape, i.type) for i in ins]}, "
        f"outputs {[(o.name, o.shape, o.type) for o in outs]}")
    assert [i.name for i in ins] == [INPUT_NAME] and ins[0].shape == [1, 256, 256, 3]
    assert [o.name for o in outs] == [OUTPUT_NAME] and outs[0].shape == [1, 256, 256, 1]

    cases = [(name, preprocess(img)) for name, img in load_test_images()]
    rng = np.random.default_rng(0)
    cases.append(("uniform-noise", rng.random((1, 256, 256, 3), dtype=np.float32)))

    worst = 0.0
    results = {}
    for name, x in cases:
        interp.set_tensor(t_in, x)
        interp.invoke()
        ref = interp.get_tensor(t_out).copy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        if got.shape != ref.shape:
            sys.exit(f"{name}: shape mismatch onnx {got.shape} vs tflite {ref.shape}")
        diff = float(np.max(np.abs(got - ref)))
        worst = max(worst, diff)
        fg_onnx = float(np.mean(got > 0.5))
        fg_tfl = float(np.mean(ref > 0.5))
        results[name] = got
        log(f"  {name:22s} max|onnx-tflite| = {diff:.3e}  foreground(>0.5) onnx {fg_onnx:.4f} "
            f"tflite {fg_tfl:.4f}")
    log(f"max abs diff ONNX vs TFLite over {len(cases)} inputs: {worst:.3e} "
        f"(tolerance {TOLERANCE:g})")

    if "messi5.jpg" in results:
        m = results["messi5.jpg"][0, :, :, 0] > 0.5
        fg = float(m.mean())
        # The footballer's bounding box in messi5.jpg (548x342) is about
        # x 70..455, y 60..335 px (hand to foot); the rest is pitch and crowd.
        h, w = m.shape
        box = np.zeros_like(m)
        box[int(0.15 * h):, int(0.12 * w):int(0.85 * w)] = True
        inside = float(m[box].mean())
        outside = float(m[~box].mean())
        log(f"messi5.jpg foreground fraction (mask>0.5): {fg:.4f}; inside the player box "
            f"{inside:.4f}, outside {outside:.4f}")
        if not (0.05 < fg < 0.6 and inside > 3 * outside):
            log("WARNING: messi5.jpg mask does not look like a person segmentation")
            return False
    return worst <= TOLERANCE


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=os.path.join(HERE, "selfie_segmentation.onnx"))
    ap.add_argument("--wheel", help="use this mediapipe-0.10.14 wheel instead of downloading it")
    ap.add_argument("--workdir", help="keep intermediate files here (default: a temp dir)")
    args = ap.parse_args()

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        tflite_path = fetch_tflite(workdir, args.wheel)
        model = convert(tflite_path)
        onnx.save(model, args.output)
        log(f"wrote {args.output} ({os.path.getsize(args.output)} bytes)")
        ok = verify(tflite_path, args.output)
    if not ok:
        log("FAILED: the ONNX model does not match the TFLite model "
            "or does not find the person in messi5.jpg (see above)")
        return 1
    log("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
