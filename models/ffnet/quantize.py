#!/usr/bin/env python3
"""Post-training static quantization (PTQ) of an image model to a QDQ ONNX model for the
QNN HTP backend (Snapdragon NPU) with ONNX Runtime's quantization tools.

    python models/ffnet/quantize.py MODEL.onnx --scheme w8a8  --out MODEL_w8a8.onnx
    python models/ffnet/quantize.py MODEL.onnx --scheme w8a16 --out MODEL_w8a16.onnx
    python models/ffnet/quantize.py models/selfie_segmentation.onnx --scheme w8a8 \
        --recipe tuned --out out/models/selfie_segmentation_w8a8.onnx
    python models/ffnet/quantize.py models/selfie_segmentation.onnx --scheme w8a16 \
        --out out/models/selfie_segmentation_w8a16.onnx \
        --quantized-io out/models/selfie_segmentation_w8a16_qio.onnx

--quantized-io also writes the model with integer input and output (quantized_io: the
graph-boundary QuantizeLinear/DequantizeLinear removed, as Qualcomm AI Hub exports quantized
models), which QNN HTP runs wholly, with no CPU node.

Schemes (both: QDQ format, weights int8 symmetric per output channel, biases int32,
activations asymmetric, MinMax calibration):

    w8a8   activations uint8   (ORT's CPU EP fuses these into integer kernels too)
    w8a16  activations uint16  (com.microsoft QuantizeLinear/DequantizeLinear, which QNN
                                EP takes; ONNX Runtime also raises the model's opset to 21.
                                ORT's CPU EP has no 16-bit integer kernels, so on a CPU it
                                is *slower* than fp32: it is a format for the NPU)

Recipes (--recipe):

    plain  ORT's QNN config as is: MinMax ranges, round-to-nearest weights (plus the
           sigmoid-logit range override below). Used for FFNet and for W8A16.
    tuned  (w8a8 only; what build_all.py uses for the selfie model) the same W8A8 QDQ format
           with three post-training steps, all fitted on the calibration images only:
           1. cross-layer equalization of Conv -> Relu -> depthwise Conv chains
              (equalize_relu_depthwise): an exact float rescaling that gives every channel of
              the Relu output the full uint8 range; the per-channel int8 weights lose nothing.
           2. activation ranges (search_activation_ranges): HardSwish inputs get a lower limit
              of -3 (exact: HardSwish is 0 below -3), then the --search-top activation groups
              that hurt most get the range (shrink factors of the MinMax range) with the
              lowest mean |mask difference| vs FP32 on the calibration images; the result
              goes to ORT as TensorQuantOverrides rmin/rmax.
           3. the 16->1 ConvTranspose that makes the sigmoid logits is re-rounded with GPTQ,
              each output pixel weighted by sigmoid'(FP32 logit) (round_sigmoid_head); its
              scales and bias stay as ORT chose them.
           The selfie model, 18 held-out images (models/README.md): mask IoU vs FP32 0.85 ->
           0.93, pixel agreement 0.985 -> 0.993 (CPU EP; the QNN HTP simulator agrees).
           It takes about 3 minutes on 2 cores (the range search runs the model ~1500 times).
    tuned-mixed  NOT pure W8A8: the tuned recipe with --a16 K activation groups in uint16 (the
           rest uint8; weights int8 per channel as before; QDQ that QNN HTP runs wholly). The
           groups are ranked on the calibration images only (rank_a16_groups: starting from the
           tuned model with *every* activation in uint16, each group is put back to uint8
           alone; groups ranked by how much that raises the mean |probability difference| vs
           FP32) and the K most harmful ones stay uint16. Every op that produces or reads a
           uint16 tensor runs in 16 bits (QNN takes one activation type per op); ORT's
           mixed-precision "convert" overrides (mixed_precision_overrides) insert the uint8 <->
           uint16 conversions at the borders. Adds ~20 s to the tuned recipe.

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
import numpy as np  # noqa: E402

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


RECIPES = ("plain", "tuned", "tuned-mixed")


def _ort_quantize(model_in, model_out, act, images, overrides=None, keep_removable=False):
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization import quantize as ort_quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    reader = FrameReader(model_in, images)
    cfg = get_qnn_qdq_config(
        model_in,
        reader,
        calibrate_method=CalibrationMethod.MinMax,
        activation_type=act,
        weight_type=QuantType.QInt8,
        per_channel=True,
        init_overrides=overrides or None,
        keep_removable_activations=keep_removable,
        # Calibrate one image at a time, merging min/max ranges as it goes: the calibrator
        # otherwise keeps every intermediate tensor of every image in memory (a 1024x2048
        # FFNet has about a gigabyte of them per image). (CalibMaxIntermediateOutputs is no
        # help: in onnxruntime 1.32 it drops the collected data without merging it.)
        stride=1,
    )
    ort_quantize(model_in, model_out, cfg)
    return cfg, len(reader)


def quantize(model_in: str, model_out: str, scheme: str, images, recipe: str = "plain",
             search_top: int = 30, log=None, a16: int = 0):
    """Quantize ``model_in`` to ``model_out``; ``images``: RGB uint8 calibration images.

    ``recipe`` "plain": ORT's QNN config with MinMax ranges (and the sigmoid-logit override).
    ``recipe`` "tuned" (w8a8 only): see the module docstring; ``search_top`` is the number of
    activation groups whose range is searched (0: none, only the exact HardSwish clip).
    ``recipe`` "tuned-mixed" (w8a8 only): the tuned model with the ``a16`` activation groups
    that rank_a16_groups ranks first carried in uint16.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType

    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}")
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}")
    if recipe != "plain" and scheme != "w8a8":
        raise ValueError("the tuned recipes are for w8a8 (the range search assumes uint8)")
    if recipe == "tuned-mixed" and a16 < 1:
        raise ValueError("tuned-mixed needs a16 >= 1 (the number of uint16 activation groups)")
    act = QuantType.QUInt8 if scheme == "w8a8" else QuantType.QUInt16
    os.makedirs(os.path.dirname(os.path.abspath(model_out)), exist_ok=True)
    sig = sigmoid_logit_overrides(model_in)
    t = time.time()
    info = {"recipe": recipe}
    if recipe == "plain":
        cfg, n = _ort_quantize(model_in, model_out, act, images, sig)
        return {"seconds": time.time() - t, "calibration_images": n, "recipe": recipe,
                "overrides": sorted(cfg.extra_options.get("TensorQuantOverrides", {}))}
    name, shape, layout = media.input_contract(model_in)
    inputs = [media.to_input(im, shape, layout) for im in images]
    with tempfile.TemporaryDirectory() as d:
        f, eq = equalize_relu_depthwise(onnx.load(model_in), inputs)
        info["equalized"] = eq
        f_path = os.path.join(d, "equalized.onnx")
        onnx.save(f, f_path)
        keep_path = os.path.join(d, "keep.onnx")
        _ort_quantize(f_path, keep_path, act, images, sig, keep_removable=True)
        ranges = search_activation_ranges(f, onnx.load(keep_path), inputs, top=search_top,
                                          fixed=tuple(sig), log=log)
        ov = {t_: [{"rmin": np.array(a, np.float32), "rmax": np.array(b, np.float32)}]
              for t_, (a, b) in ranges.items() if t_ not in sig}
        ov.update(sig)
        tuned_path = os.path.join(d, "tuned.onnx") if recipe == "tuned-mixed" else model_out
        cfg, n = _ort_quantize(f_path, tuned_path, act, images, ov)
        q, head = round_sigmoid_head(onnx.load(tuned_path), f, inputs, log=log)
        info["head_rounded"] = head
        if recipe == "tuned-mixed":
            order = rank_a16_groups(q, f, inputs, log=log)
            lift = [t_ for grp in order[:a16] for t_ in grp]
            ov, lifted = mixed_precision_overrides(f, ov, lift)
            for t_ in lifted:
                if t_ in sig:  # the sigmoid logits keep their [-8, 8] range in 16 bits too
                    ov[t_][0].update(rmin=sig[t_][0]["rmin"], rmax=sig[t_][0]["rmax"])
            cfg, n = _ort_quantize(f_path, model_out, act, images, ov)
            q, head = round_sigmoid_head(onnx.load(model_out), f, inputs, log=log)
            info.update(a16=a16, a16_of=len(order), a16_groups=order[:a16], a16_tensors=lifted)
            if log:
                log(f"uint16 activation groups ({a16} of {len(order)}): {order[:a16]}")
        onnx.save(q, model_out)
    info.update(seconds=time.time() - t, calibration_images=n,
                overrides=sorted(cfg.extra_options.get("TensorQuantOverrides", {})))
    return info

# ---------------------------------------------------------------------------------------------
# "tuned" recipe: PTQ improvements on top of the plain ORT/QNN config (still real int8
# per-channel weights, uint8 activations, standard QuantizeLinear/DequantizeLinear).
# ---------------------------------------------------------------------------------------------

HSWISH_CUTOFF = -3.0  # HardSwish(x) = 0 for every x <= -3: a lower range limit there is exact
RANGE_FACTORS = (1.0, 0.8, 0.6, 0.45, 0.3)  # candidate shrink factors of a calibrated range


def _np_inits(model):
    from onnx import numpy_helper as nh

    return {i.name: nh.to_array(i) for i in model.graph.initializer}


def _set_init(model, name, arr):
    from onnx import numpy_helper as nh

    for i in model.graph.initializer:
        if i.name == name:
            i.CopyFrom(nh.from_array(arr.astype(np.float32), name))
            return
    raise KeyError(name)


def _consumers(model):
    c = {}
    for n in model.graph.node:
        for i in n.input:
            c.setdefault(i, []).append(n)
    return c


def _run_tensors(model, tensors, inputs):
    """Run ``model`` (float) on ``inputs`` and return {tensor: [array per input]}."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for t in tensors:
        m.graph.output.extend([onnx.ValueInfoProto(name=t)])
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    out = {t: [] for t in tensors}
    for x in inputs:
        for t, v in zip(tensors, s.run(list(tensors), {name: x})):
            out[t].append(v)
    return out


def equalize_relu_depthwise(model, inputs):
    """Cross-layer equalization (Nagel et al. 2019) of Conv -> Relu -> depthwise Conv chains.

    Relu is positive-homogeneous, so output channel i of the first Conv (weights and bias)
    can be divided by s_i and the depthwise filter i multiplied by s_i without changing the
    float function. Both convs' weights are quantized per output channel, so their int8
    error is unchanged; only the per-tensor uint8 range of the Relu output changes. With
    s_i = range_i / max_j range_j every channel of that tensor uses the full 8-bit range (the
    selfie model's first one has channels 0..74 next to channels 0..3). Only chains whose
    intermediate tensors have no other consumer are touched. Returns (model, [relu outputs]).
    """
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    cons = _consumers(m)
    prod = {o: n for n in m.graph.node for o in n.output}
    W = _np_inits(m)
    pairs = []
    for r in m.graph.node:
        if r.op_type != "Relu":
            continue
        a = prod.get(r.input[0])
        users = cons.get(r.output[0], [])
        if a is None or a.op_type != "Conv" or len(cons.get(a.output[0], [])) != 1 or len(users) != 1:
            continue
        b = users[0]
        if b.op_type != "Conv" or len(a.input) < 3 or len(b.input) < 2:
            continue
        wb = W.get(b.input[1])
        grp = next((onnx.helper.get_attribute_value(x) for x in b.attribute if x.name == "group"), 1)
        if wb is None or wb.shape[1] != 1 or grp != wb.shape[0] or W.get(a.input[1]) is None:
            continue
        pairs.append((a, r, b))
    if not pairs:
        return m, []
    acts = _run_tensors(m, [r.output[0] for _, r, _ in pairs], inputs)
    for a, r, b in pairs:
        v = np.concatenate([x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1) for x in acts[r.output[0]]], 1)
        rng = v.max(1).astype(np.float64)
        rng = np.maximum(rng, rng.max() / 64.0)  # dead channels: bounded scaling
        s = rng / rng.max()
        wa, ba, wb = W[a.input[1]].astype(np.float64), W[a.input[2]].astype(np.float64), W[b.input[1]].astype(np.float64)
        _set_init(m, a.input[1], wa / s[:, None, None, None])
        _set_init(m, a.input[2], ba / s)
        _set_init(m, b.input[1], wb * s[:, None, None, None])
    return m, [r.output[0] for _, r, _ in pairs]


def _activation_qparams(qdq_model):
    """{float tensor: (scale, zero point)} of the activation QuantizeLinear nodes."""
    I = _np_inits(qdq_model)
    out = {}
    for n in qdq_model.graph.node:
        # (ORT renames a graph output's producer output to <name>_QuantizeLinear_Input)
        if n.op_type == "QuantizeLinear" and n.input[0] not in I and not n.input[0].endswith("_QuantizeLinear_Input"):
            out[n.input[0]] = (float(I[n.input[1]]), int(I[n.input[2]]))
    return out


def _fake_quant(model, params):
    """Float model with uint8 QuantizeLinear/DequantizeLinear after each tensor in ``params``."""
    import onnx
    from onnx import helper
    from onnx import numpy_helper as nh

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    new = []
    for n in g.node:
        new.append(n)
        for k, o in enumerate(list(n.output)):
            if o in params:
                s, z = params[o]
                g.initializer.extend([nh.from_array(np.array(s, np.float32), o + "__fq_s"),
                                      nh.from_array(np.array(z, np.uint8), o + "__fq_z")])
                new.append(helper.make_node("QuantizeLinear", [o + "__fq_in", o + "__fq_s", o + "__fq_z"], [o + "__fq_q"]))
                new.append(helper.make_node("DequantizeLinear", [o + "__fq_q", o + "__fq_s", o + "__fq_z"], [o]))
                n.output[k] = o + "__fq_in"
    del g.node[:]
    g.node.extend(new)
    return m


def _uint8_params(rmin, rmax):
    rmin, rmax = min(rmin, 0.0), max(rmax, 0.0)
    s = (rmax - rmin) / 255.0
    return (s, int(round(-rmin / s)))


def hardswish_inputs(model):
    """Tensors feeding a HardSwish, following Transpose/Reshape back to the producing op."""
    prod = {o: n for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        if n.op_type == "HardSwish":
            t = n.input[0]
            while True:
                out.append(t)
                p = prod.get(t)
                if p is None or p.op_type not in ("Transpose", "Reshape"):
                    break
                t = p.input[0]
    return out


def search_activation_ranges(fmodel, qdq_keep, inputs, top=30, factors=RANGE_FACTORS, fixed=(), log=None):
    """Per-tensor uint8 range search on the calibration inputs (never on validation images).

    Starts from the MinMax ranges of ``qdq_keep`` (a QDQ model quantized with
    QDQKeepRemovableActivations, so Relu outputs have their own Q/DQ), with the lower limit of
    HardSwish inputs raised to -3 (exact). Tensors that share quantization parameters are one
    group. Groups are ranked by the error that quantizing only that group causes; for the
    ``top`` worst (``fixed`` tensors, e.g. the sigmoid logits, are never changed), each candidate (rmin*f1, rmax*f2), f in ``factors``, is tried with every
    activation fake-quantized and weights in float, keeping the one with the lowest mean
    |output difference| vs float on the calibration inputs (coordinate descent, one pass).
    Returns {tensor: (rmin, rmax)} for every activation tensor.
    """
    P = _activation_qparams(qdq_keep)
    outs = [o.name for o in fmodel.graph.output]
    P = {t: v for t, v in P.items() if t not in outs}
    hs, fixed = set(hardswish_inputs(fmodel)), set(fixed)
    groups = {}
    for t, v in P.items():
        groups.setdefault(v, []).append(t)
    cur, members = {}, {}
    for (s, z), ts in groups.items():
        k = ts[0]
        rmin, rmax = -z * s, (255 - z) * s
        if any(t in hs for t in ts) and not any(t in fixed for t in ts):
            rmin = max(rmin, HSWISH_CUTOFF)
        cur[k], members[k] = [rmin, rmax], ts
    out_name = outs[0]
    ref = _run_tensors(fmodel, [out_name], inputs)[out_name]

    def params(only=None):
        d = {}
        for k, (a, b) in cur.items():
            if only is None or k == only:
                for t in members[k]:
                    d[t] = _uint8_params(a, b)
        return d

    def J(p):
        y = _run_tensors(_fake_quant(fmodel, p), [out_name], inputs)[out_name]
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(ref, y)]))

    free = [k for k in cur if not any(t in fixed for t in members[k])]
    order = sorted(free, key=lambda k: -J(params(only=k)))[:top] if top else []
    best = J(params())
    if log:
        log(f"range search: {len(cur)} groups, start error {best:.5f}")
    for k in order:
        r0 = list(cur[k])
        keep = (best, r0)
        for f2 in factors:
            for f1 in ((1.0,) if r0[0] >= 0 else factors):
                if f1 == 1.0 and f2 == 1.0:
                    continue
                cur[k] = [r0[0] * f1, r0[1] * f2]
                j = J(params())
                if j < keep[0] - 1e-7:
                    keep = (j, list(cur[k]))
        cur[k] = keep[1]
        best = keep[0]
        if log and keep[1] != r0:
            log(f"  {k}: [{r0[0]:.2f}, {r0[1]:.2f}] -> [{cur[k][0]:.2f}, {cur[k][1]:.2f}], error {best:.5f}")
    return {t: (float(cur[k][0]), float(cur[k][1])) for k in cur for t in members[k]}


def _gptq_rows(W, H, s, damp=0.01):
    """GPTQ (Frantar et al. 2022) rounding of rows W (R, d) to int8 at fixed scale s, minimising
    the H-weighted error (W - s*Q) H (W - s*Q)^T. Returns Q (R, d)."""
    W = W.astype(np.float64).copy()
    d = W.shape[1]
    H = H.astype(np.float64).copy()
    dead = np.diag(H) <= 0
    H[dead, dead] = 1.0
    H += damp * np.mean(np.diag(H)) * np.eye(d)
    perm = np.argsort(-np.diag(H))
    W, H = W[:, perm], H[np.ix_(perm, perm)]
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    Q = np.zeros_like(W)
    for i in range(d):
        q = np.clip(np.round(W[:, i] / s), -127, 127)
        Q[:, i] = q
        err = (W[:, i] - q * s) / U[i, i]
        W[:, i:] -= err[:, None] * U[i, i:][None, :]
    return Q[:, np.argsort(perm)]


def round_sigmoid_head(qdq_model, fmodel, inputs, log=None):
    """Re-round the int8 weights of the layer producing the output Sigmoid's logits.

    That layer (the selfie model's 2x2 stride-2 ConvTranspose, 16 -> 1 channel) has one
    weight scale for all its weights, and its logits span about -1000..300 while only those
    near the 0.55 threshold matter. GPTQ with each output pixel weighted by sigmoid'(float
    logit) (so a -1000 background logit counts for nothing) picks the int8 values; the
    scales and the int32 bias stay those ORT chose. Layer inputs are taken from the QDQ model.
    Plain (unweighted) GPTQ makes this layer worse: the huge background logits dominate it.
    """
    import onnx

    q = onnx.ModelProto()
    q.CopyFrom(qdq_model)
    g = q.graph
    I = _np_inits(q)
    prod = {o: n for n in g.node for o in n.output}
    dq = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear"}
    head, seen_sigmoid, t = None, False, g.output[0].name
    for _ in range(12):  # walk back from the output: DQ/Q/Sigmoid/Transpose/Reshape -> Conv
        p = prod.get(t)
        if p is None:
            break
        if p.op_type in ("Conv", "ConvTranspose"):
            head = p if seen_sigmoid else None
            break
        if p.op_type not in ("DequantizeLinear", "QuantizeLinear", "Sigmoid", "Transpose", "Reshape"):
            break
        seen_sigmoid |= p.op_type == "Sigmoid"
        t = p.input[0]
    if head is None or head.input[1] not in dq:
        return q, None
    wdq = dq[head.input[1]]
    at = {a.name: onnx.helper.get_attribute_value(a) for a in head.attribute}
    Wq = I[wdq.input[0]]
    s = I[wdq.input[1]].astype(np.float64).ravel()
    k = list(at.get("kernel_shape", Wq.shape[2:]))
    if head.op_type != "ConvTranspose" or Wq.shape[1] != 1 or list(at.get("strides", [1, 1])) != k or s.size != 1:
        return q, None  # only the non-overlapping one-channel ConvTranspose head is handled
    Wf = Wq.astype(np.float64) * s[0]
    fw = _np_inits(fmodel)
    name = wdq.output[0].replace("_DequantizeLinear_Output", "")
    if name in fw:
        Wf = fw[name].astype(np.float64)
    X = _run_tensors(q, [head.input[0]], inputs)[head.input[0]]
    Z = _run_tensors(fmodel, [head.output[0]], inputs)[head.output[0]]  # float logits
    Xc = np.concatenate([x[0].reshape(x.shape[1], -1) for x in X], 1).astype(np.float64)
    Qw = np.zeros_like(Wf)
    for a in range(k[0]):
        for b in range(k[1]):
            z = np.concatenate([zz[0, 0, a::k[0], b::k[1]].ravel() for zz in Z]).astype(np.float64)
            p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
            w = p * (1 - p) + 1e-6
            H = (Xc * w) @ Xc.T / w.sum()
            Qw[:, 0, a, b] = _gptq_rows(Wf[:, 0, a, b][None], H, s[0])[0]
    changed = int((Qw != Wq).sum())
    from onnx import numpy_helper as nh

    for i in g.initializer:
        if i.name == wdq.input[0]:
            i.CopyFrom(nh.from_array(Qw.astype(np.int8), i.name))
    if log:
        log(f"sigmoid head {head.name}: GPTQ changed {changed} of {Qw.size} int8 weights")
    return q, head.name


# ---------------------------------------------------------------------------------------------
# "tuned-mixed" recipe: some activations in uint16 (not pure W8A8)
# ---------------------------------------------------------------------------------------------

MOVE_OPS = ("Transpose", "Reshape", "Resize", "AveragePool")  # ORT gives output = input qparams
PASS_OPS = ("Relu", "Transpose", "Reshape")  # lifting their output lifts their input too


def activation_groups(qdq_model):
    """Activation QuantizeLinear nodes of a QDQ model, grouped: a node joins the group of the
    node quantizing the input of the data-movement op (MOVE_OPS) that feeds it when both have
    the same scale and zero point (ORT shares them there). Returns [[Q node, ...], ...] in
    graph order."""
    I = _np_inits(qdq_model)
    qn = [n for n in qdq_model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in I]
    prod = {o: n for n in qdq_model.graph.node for o in n.output}
    qp = {n.name: (float(I[n.input[1]]), int(I[n.input[2]])) for n in qn}
    qof = {n.output[0]: n.name for n in qn}
    par = {n.name: n.name for n in qn}

    def find(a):
        while par[a] != a:
            a = par[a]
        return a

    for n in qn:
        p = prod.get(n.input[0])
        if p is not None and p.op_type in MOVE_OPS:
            dq = prod.get(p.input[0])
            if (dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in qof
                    and qp[qof[dq.input[0]]] == qp[n.name]):
                par[find(n.name)] = find(qof[dq.input[0]])
    groups = {}
    for n in qn:
        groups.setdefault(find(n.name), []).append(n)
    return list(groups.values())


def _with_uint16(qdq_model, qnodes, ranges):
    """Copy of ``qdq_model`` whose QuantizeLinear nodes ``qnodes`` (names) and their
    DequantizeLinear nodes are uint16 (com.microsoft domain) with range ``ranges[name]``."""
    from onnx import helper
    from onnx import numpy_helper as nh

    m = onnx_copy(qdq_model)
    g = m.graph
    cons = _consumers(m)
    for n in g.node:
        if n.name in qnodes:
            a, b = ranges[n.name]
            s = (b - a) / 65535.0
            z = int(round(-a / s))
            g.initializer.extend([nh.from_array(np.array(s, np.float32), n.name + "__a16_s"),
                                  nh.from_array(np.array(z, np.uint16), n.name + "__a16_z")])
            for x in [n] + [c for c in cons.get(n.output[0], []) if c.op_type == "DequantizeLinear"]:
                x.input[1], x.input[2] = n.name + "__a16_s", n.name + "__a16_z"
                x.domain = "com.microsoft"
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.extend([helper.make_opsetid("com.microsoft", 1)])
    return m


def onnx_copy(model):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def rank_a16_groups(qdq_model, fmodel, inputs, log=None):
    """Rank the activation groups of the (tuned W8A8) ``qdq_model`` by how much they need 16
    bits, on the calibration ``inputs`` only. Start from the model with every activation
    Q/DQ pair in uint16 (MinMax range over ``inputs`` from the float ``fmodel``; the sigmoid
    logits [-8, 8], the output sigmoid [0, 1]; weights stay the int8 ones); put each group
    back to its uint8 parameters alone and measure the mean |probability difference| vs
    ``fmodel``. Returns the groups' float tensor names, most harmful in uint8 first
    (deterministic: single-threaded CPU runs, ties by graph order)."""
    import onnxruntime as ort

    groups = activation_groups(qdq_model)
    fnames = {o for n in fmodel.graph.node for o in n.output}
    outs = [o.name for o in fmodel.graph.output]
    sig = set(sigmoid_logit_overrides_model(fmodel))
    tens = {n.name: n.input[0] for grp in groups for n in grp}
    base = {t: t.replace("_QuantizeLinear_Input", "") for t in tens.values()}
    need = sorted({b for b in base.values() if b in fnames and b not in sig and b not in outs})
    acts = _run_tensors(fmodel, need, inputs)
    rng = {}
    for grp in groups:
        lo, hi = 0.0, 0.0
        for n in grp:
            b = base[n.input[0]]
            if b in sig:
                lo, hi = min(lo, -SIGMOID_LOGIT_RANGE), max(hi, SIGMOID_LOGIT_RANGE)
            elif b in acts:
                lo = min(lo, float(min(a.min() for a in acts[b])))
                hi = max(hi, float(max(a.max() for a in acts[b])))
            else:  # a graph output (the sigmoid probabilities)
                hi = max(hi, 1.0)
        for n in grp:
            rng[n.name] = (lo, hi)
    ref = _run_tensors(fmodel, [outs[0]], inputs)[outs[0]]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    name = fmodel.graph.input[0].name

    def err(names):
        s = ort.InferenceSession(_with_uint16(qdq_model, names, rng).SerializeToString(), so,
                                 providers=["CPUExecutionProvider"])
        return float(np.mean([np.abs(s.run(None, {name: x})[0] - r).mean()
                              for x, r in zip(inputs, ref)]))

    every = {n.name for grp in groups for n in grp}
    e_all = err(every)
    harm = [err(every - {n.name for n in grp}) - e_all for grp in groups]
    order = sorted(range(len(groups)), key=lambda i: (-harm[i], i))
    if log:
        log(f"a16 ranking: {len(groups)} activation groups, all uint16 error {e_all:.5f}; "
            f"worst in uint8: " + ", ".join(f"{tens[groups[i][0].name]} +{harm[i]:.5f}" for i in order[:5]))
    return [[base[n.input[0]] for n in groups[i]] for i in order]


def sigmoid_logit_overrides_model(fmodel):
    """sigmoid_logit_overrides for a loaded model."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.onnx")
        onnx.save(fmodel, p)
        return sigmoid_logit_overrides(p)


def mixed_precision_overrides(fmodel, overrides, lift):
    """TensorQuantOverrides for ORT's QDQ quantizer with the tensors ``lift`` in uint16 and the
    rest as in ``overrides`` (uint8). QNN takes one activation type per op, so every op that
    produces or reads a lifted tensor runs in 16 bits: its other outputs are produced in uint16
    and converted to uint8 (keeping their uint8 range) for the 8-bit ops that read them; its
    other inputs are converted to uint16 by ORT's MixedPrecisionTensorQuantOverridesFixer
    (get_qnn_qdq_config). A lifted output of Relu/Transpose/Reshape lifts that op's input too
    (else it would be rounded to 8 bits first). Every uint8 override gets an explicit
    quant_type: the fixer compares types, and an override without one reads as None ("Desired
    producer quant_type ... doesn't match existing type"). Returns (overrides, lifted tensors)."""
    from onnxruntime.quantization import QuantType

    g = fmodel.graph
    inits = {i.name for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons = _consumers(fmodel)
    outs = {o.name for o in g.output}
    L, todo = set(), list(lift)
    while todo:
        t = todo.pop()
        if t in L or t in inits:
            continue
        L.add(t)
        p = prod.get(t)
        if p is not None and p.op_type in PASS_OPS:
            todo.append(p.input[0])
    ops = {n.name: n for t in L for n in ([prod[t]] if t in prod else []) + cons.get(t, [])}
    ov = {k: [dict(e) for e in v] for k, v in overrides.items()}
    for v in ov.values():
        for e in v:
            e.setdefault("quant_type", QuantType.QUInt8)
    for t in L:
        ov[t] = [{"quant_type": QuantType.QUInt16}]
    for n in ops.values():
        for o in n.output:
            if not o or o in L:
                continue
            old = ov.get(o, [{}])[0]
            rng = {k: old[k] for k in ("rmin", "rmax") if k in old}
            if o in outs or any(c.name not in ops for c in cons.get(o, [])):
                ov[o] = [{"quant_type": QuantType.QUInt16,
                          "convert": {"quant_type": QuantType.QUInt8, **rng}}]
            else:
                ov[o] = [{"quant_type": QuantType.QUInt16}]
    return ov, sorted(L)


# ---------------------------------------------------------------------------------------------
# Quantized I/O: the graph-boundary QuantizeLinear / DequantizeLinear removed
# ---------------------------------------------------------------------------------------------

# data-movement ops that commute with per-tensor quantization (exact on integers)
BOUNDARY_MOVES = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten")
_INT_TYPES = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16}  # TensorProto elem type -> numpy


def _scalar_qparams(inits, node):
    """(scale, zero point, zero point's TensorProto elem type) of a per-tensor Q/DQ node whose
    scale and zero point are initializers; ValueError otherwise."""
    from onnx import numpy_helper as nh

    if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
        raise ValueError(f"{node.op_type} '{node.name}': scale and zero point must be initializers")
    s, z = inits[node.input[1]], inits[node.input[2]]
    sv, zv = nh.to_array(s), nh.to_array(z)
    if sv.size != 1 or zv.size != 1:
        raise ValueError(f"{node.op_type} '{node.name}' is per-axis; a graph boundary needs one "
                         "scale and zero point")
    if z.data_type not in _INT_TYPES:
        raise ValueError(f"{node.op_type} '{node.name}': zero point type {z.data_type} is not "
                         "8/16-bit integer")
    return float(sv.reshape(())), int(zv.reshape(())), z.data_type


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """What ONNX's QuantizeLinear computes (round half to even, saturate): the integer tensor a
    quantized-I/O model takes in place of float ``x``."""
    info = np.iinfo(dtype)
    q = np.rint(x.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """What the removed output DequantizeLinear computed (segpostproc does the same)."""
    return ((q.astype(np.int32) - zero_point) * np.float32(scale)).astype(np.float32)


def io_quantization(path: str) -> dict:
    """{"input": {...} or None, "output": {...} or None}: the scale and zero point of an
    integer graph input / output, read the way ffnetinfer reads them (src/inference/onnx_proto.rs): a
    DequantizeLinear whose first input is the graph input, a QuantizeLinear whose output is
    the graph output, with scalar initializers as scale and zero point. Float I/O gives None.
    Each entry: name, dtype ("uint8"/"uint16"/...), scale, zero_point, node (the Q/DQ)."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    ins = [i for i in g.input if i.name not in inits]
    res = {"input": None, "output": None}

    def entry(v, node):
        if v.type.tensor_type.elem_type not in _INT_TYPES:
            return None
        if node is None:
            raise ValueError(f"{path}: {v.name} is integer but no Q/DQ gives its scale")
        scale, zp, _ = _scalar_qparams(inits, node)
        return {"name": v.name, "dtype": np.dtype(_INT_TYPES[v.type.tensor_type.elem_type]).name,
                "scale": scale, "zero_point": zp, "node": node.name}

    if ins:
        dq = next((n for n in g.node if n.op_type == "DequantizeLinear" and n.input
                   and n.input[0] == ins[0].name), None)
        res["input"] = entry(ins[0], dq)
    outs = list(g.output)
    out = next((o for o in outs if o.name == "mask"), outs[0] if outs else None)
    if out is not None:
        q = next((n for n in g.node if n.op_type == "QuantizeLinear" and n.output
                  and n.output[0] == out.name), None)
        res["output"] = entry(out, q)
    return res


def quantized_io(model_in: str, model_out: str) -> dict:
    """Write ``model_out``: the QDQ model ``model_in`` with quantized inputs and outputs, the
    form of Qualcomm AI Hub's quantized exports.

    A QDQ model from quantize() takes float input and gives float output: the input's first
    QuantizeLinear (float -> uint8/uint16) and the output's last DequantizeLinear are at the
    graph boundary, and QNN EP leaves both to the CPU (a CPU pass over the whole tensor and a
    CPU <-> NPU hand-over each). Here they are removed:

    * each graph input becomes an integer input (uint8 for W8A8, uint16 for W8A16; same name)
      carrying the first QuantizeLinear's scale and zero point: that Q is removed and the
      DequantizeLinear nodes that read it read the graph input instead. Where data-movement
      ops (Transpose, Reshape, ...: exact on integers) stand between the input and its first
      Q, as in the selfie model (NHWC input -> Transpose -> Q), a DequantizeLinear with the
      Q's scale and zero point is put right after the input, so the movement ops become a
      DQ -> op -> Q unit that QNN runs quantized. Either way the DequantizeLinear right after
      the graph input holds the scale and zero point: where ffnetinfer/segpreproc read them.
    * each graph output written by a DequantizeLinear of a QuantizeLinear becomes that Q's
      integer output (same name); data-movement ops after the DQ get a QuantizeLinear with the
      same scale and zero point after them instead. The QuantizeLinear right before the output
      keeps the scale and zero point (where ffnetinfer reads them to dequantize the scores).

    Feeding quantize_input(x, scale, zero_point) gives dequantize_output() of exactly what the
    float-I/O model computes inside. Returns {"inputs": [...], "outputs": [...]}, each
    boundary's name, type, scale, zero point and the nodes removed/added.
    """
    import onnx
    from onnx import helper

    m = onnx.load(model_in)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons = _consumers(m)
    info = {"inputs": [], "outputs": []}
    removed, head, tail = set(), [], []

    def rename(old, new):
        for n in g.node:
            for k, t in enumerate(n.input):
                if t == old:
                    n.input[k] = new

    def exact_move(n):  # a data-movement op whose other inputs are constants
        return n.op_type in BOUNDARY_MOVES and all(i in inits for i in n.input[1:] if i)

    for gi in g.input:
        if gi.name in inits:
            continue
        chain, t = [], gi.name
        while True:
            users = cons.get(t, [])
            if len(users) != 1:
                raise ValueError(f"'{t}' (from input '{gi.name}') has {len(users)} readers; "
                                 "expected one QuantizeLinear: not a float-I/O QDQ model")
            u = users[0]
            if u.op_type == "QuantizeLinear":
                q = u
                break
            if not exact_move(u):
                raise ValueError(f"input '{gi.name}' reaches {u.op_type} '{u.name}' before any "
                                 "QuantizeLinear: not a float-I/O QDQ model")
            chain.append(u)
            t = u.output[0]
        scale, zp, ty = _scalar_qparams(inits, q)
        readers = cons.get(q.output[0], [])
        if not readers or any(r.op_type != "DequantizeLinear" for r in readers):
            raise ValueError(f"input Q '{q.name}' feeds {[r.op_type for r in readers]}; expected "
                             "DequantizeLinear only")
        for r in readers:
            if _scalar_qparams(inits, r)[:2] != (scale, zp):
                raise ValueError(f"DequantizeLinear '{r.name}' does not undo '{q.name}'")
        d = {"name": gi.name, "elem_type": ty, "dtype": np.dtype(_INT_TYPES[ty]).name,
             "scale": scale, "zero_point": zp}
        if chain:  # input -> DQ (new) -> moves -> Q -> DQ: the moves run quantized
            dq = helper.make_node("DequantizeLinear", [gi.name, q.input[1], q.input[2]],
                                  [gi.name + "_dequantized"], name=gi.name + "_DequantizeLinear",
                                  domain=q.domain)
            chain[0].input[0] = dq.output[0]
            head.append(dq)
            d.update(added=dq.name, moves=[n.op_type for n in chain])
        else:
            removed.add(id(q))
            rename(q.output[0], gi.name)
            d.update(removed=q.name, dequantize=[r.name for r in readers])
        gi.type.tensor_type.elem_type = ty
        info["inputs"].append(d)

    for go in g.output:
        chain, t = [], go.name
        p = prod.get(t)
        while p is not None and exact_move(p):
            chain.append(p)
            p = prod.get(p.input[0])
        dq = p
        if dq is None or dq.op_type != "DequantizeLinear":
            raise ValueError(f"output '{go.name}' is not written by a DequantizeLinear")
        q = prod.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            raise ValueError(f"output DequantizeLinear '{dq.name}' does not read a QuantizeLinear")
        scale, zp, ty = _scalar_qparams(inits, q)
        if _scalar_qparams(inits, dq)[:2] != (scale, zp):
            raise ValueError(f"DequantizeLinear '{dq.name}' does not undo '{q.name}'")
        if cons.get(go.name):
            raise ValueError(f"output '{go.name}' is also read inside the graph")
        d = {"name": go.name, "elem_type": ty, "dtype": np.dtype(_INT_TYPES[ty]).name,
             "scale": scale, "zero_point": zp}
        if chain:  # Q -> DQ -> moves -> Q (new) -> output
            last = chain[0]
            last.output[0] = go.name + "_float"
            q2 = helper.make_node("QuantizeLinear", [last.output[0], q.input[1], q.input[2]],
                                  [go.name], name=go.name + "_QuantizeLinear", domain=q.domain)
            tail.append(q2)
            d.update(added=q2.name, moves=[n.op_type for n in reversed(chain)])
        else:
            removed.add(id(dq))
            old = q.output[0]
            q.output[0] = go.name
            rename(old, go.name)  # other readers of the integer tensor (if any) follow it
            d.update(removed=dq.name, quantize=q.name)
        go.type.tensor_type.elem_type = ty
        info["outputs"].append(d)

    keep = head + [n for n in g.node if id(n) not in removed] + tail
    del g.node[:]
    g.node.extend(keep)
    used = {t for n in g.node for t in n.input}
    live = used | {o for n in g.node for o in n.output}
    boundary = {v.name for v in list(g.input) + list(g.output)}
    for v in [v for v in g.value_info if v.name in boundary or v.name not in live]:
        g.value_info.remove(v)  # stale: a removed tensor, or a boundary whose type changed
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    onnx.checker.check_model(m)
    note = ("Quantized I/O (models/ffnet/quantize.py quantized_io): " + "; ".join(
        [f"input '{d['name']}' {d['dtype']} scale {d['scale']:.9g} zero point {d['zero_point']}"
         for d in info["inputs"]]
        + [f"output '{d['name']}' {d['dtype']} scale {d['scale']:.9g} zero point {d['zero_point']}"
           for d in info["outputs"]]))
    m.doc_string = (m.doc_string + "\n" if m.doc_string else "") + note
    os.makedirs(os.path.dirname(os.path.abspath(model_out)), exist_ok=True)
    onnx.save(m, model_out)
    return info


def qdq_summary(path: str) -> dict:
    """Counts of QuantizeLinear / DequantizeLinear nodes and the activation/weight types."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    act_types, weight_types, act_q = set(), set(), {}
    names = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32"}
    for n in q:  # activations: zero point type of QuantizeLinear
        if len(n.input) > 2 and n.input[2] in inits:
            ty = names.get(inits[n.input[2]].data_type, "?")
            act_types.add(ty)
            act_q[ty] = act_q.get(ty, 0) + 1
    for n in dq:  # weights: DequantizeLinear fed by an integer initializer
        if n.input[0] in inits and inits[n.input[0]].data_type in (2, 3, 4, 5):
            weight_types.add(names[inits[n.input[0]].data_type])
    return {"quantize": len(q), "dequantize": len(dq), "activations": sorted(act_types),
            "weights": sorted(weight_types), "activation_q": act_q,
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
    ap.add_argument("--recipe", choices=RECIPES, default="plain", help="see above")
    ap.add_argument("--a16", type=int, default=0,
                    help="tuned-mixed recipe: activation groups carried in uint16")
    ap.add_argument("--search-top", type=int, default=30,
                    help="tuned recipe: activation groups whose range is searched (0: none)")
    ap.add_argument("--quantized-io", metavar="PATH",
                    help="also write the quantized-I/O variant (quantized_io) to PATH")
    a = ap.parse_args(argv)
    imgs = media.image_set("calib", n_video=a.video_frames, n_photos=a.photos)
    info = quantize(a.model, a.out, a.scheme, imgs, recipe=a.recipe, search_top=a.search_top,
                    log=print, a16=a.a16)
    s = qdq_summary(a.out)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB, was "
          f"{os.path.getsize(a.model) / 1e6:.1f} MB): {a.scheme}, {s['quantize']} Q / "
          f"{s['dequantize']} DQ nodes, activations {s['activations']}, weights "
          f"{s['weights']}; calibrated on {info['calibration_images']} real images in "
          f"{info['seconds']:.0f} s")
    if a.quantized_io:
        io = quantized_io(a.out, a.quantized_io)
        print(f"wrote {a.quantized_io}: quantized I/O, " + "; ".join(
            f"{d['name']} {d['dtype']} scale {d['scale']:.6g} zero point {d['zero_point']}"
            for d in io["inputs"] + io["outputs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
