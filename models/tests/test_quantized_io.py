"""Quantized I/O (quantize.quantized_io): the W8A8 / W8A16 QDQ models with an integer input
and output, the graph-boundary QuantizeLinear / DequantizeLinear removed, as Qualcomm AI Hub
exports them. Checks the types, the boundary nodes, the scale / zero point that ffnetinfer
reads, and that the model computes what the float-I/O model computes (fed the integer input
the removed QuantizeLinear would have made), on random and on real images."""

import os

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

import media  # noqa: E402
import quantize as Q  # noqa: E402
import validate as V  # noqa: E402
from conftest import REPO  # noqa: E402

SELFIE = os.path.join(REPO, "models", "selfie_segmentation.onnx")
TYPES = {"w8a8": ("uint8", onnx.TensorProto.UINT8), "w8a16": ("uint16", onnx.TensorProto.UINT16)}


@pytest.fixture(scope="module")
def selfie_models(tmp_path_factory, media_or_skip):
    """{scheme: (float-I/O QDQ model, quantized-I/O model, quantized_io's report)}."""
    calib, _ = media_or_skip
    d = tmp_path_factory.mktemp("qio")
    out = {}
    for scheme in Q.SCHEMES:
        f, q = str(d / f"selfie_{scheme}.onnx"), str(d / f"selfie_{scheme}_qio.onnx")
        Q.quantize(SELFIE, f, scheme, calib[:2])
        out[scheme] = (f, q, Q.quantized_io(f, q))
    return out


@pytest.fixture(scope="module")
def ffnet_models(tmp_path_factory, media_or_skip):
    """A small untrained FFNet 40S (NCHW, ImageNet normalisation inside) in W8A8 and W8A16."""
    pytest.importorskip("torch")
    import export as E
    import ffnet as F

    calib, _ = media_or_skip
    d = tmp_path_factory.mktemp("qio_ffnet")
    fp32 = str(d / "ffnet_40s_64x128.onnx")
    E.export(F.build("ffnet_40s", seed=5), fp32, 64, 128, trained=False)
    out = {}
    for scheme in Q.SCHEMES:
        f, q = str(d / f"ffnet_{scheme}.onnx"), str(d / f"ffnet_{scheme}_qio.onnx")
        Q.quantize(fp32, f, scheme, calib[:2])
        out[scheme] = (f, q, Q.quantized_io(f, q))
    return out


def _boundary(path):
    m = onnx.load(path)
    g = m.graph
    inits = {i.name for i in g.initializer}
    (gi,) = [i for i in g.input if i.name not in inits]
    (go,) = list(g.output)
    readers = [n for n in g.node if gi.name in n.input]
    (writer,) = [n for n in g.node if go.name in n.output]
    return gi, go, readers, writer, g


def _float_boundary_qparams(float_model):
    """(scale, zero point) of the float-I/O model's first QuantizeLinear after the input
    (through data-movement ops) and of its output DequantizeLinear."""
    m = onnx.load(float_model)
    g = m.graph
    I = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    cons = {}
    for n in g.node:
        for t in n.input:
            cons.setdefault(t, []).append(n)
    t = g.input[0].name
    while True:
        (n,) = cons[t]
        if n.op_type == "QuantizeLinear":
            q_in = (float(I[n.input[1]]), int(I[n.input[2]]))
            break
        t = n.output[0]
    prod = {o: n for n in g.node for o in n.output}
    p = prod[g.output[0].name]
    while p.op_type != "DequantizeLinear":
        p = prod[p.input[0]]
    dq_out = (float(I[p.input[1]]), int(I[p.input[2]]))
    return q_in, dq_out


def _models(request, which):
    return request.getfixturevalue(which)


@pytest.mark.parametrize("which", ["selfie_models", "ffnet_models"])
@pytest.mark.parametrize("scheme", Q.SCHEMES)
def test_types_and_boundary(request, which, scheme):
    f, q, info = _models(request, which)[scheme]
    name, ty = TYPES[scheme]
    gi, go, readers, writer, g = _boundary(q)
    assert gi.type.tensor_type.elem_type == ty and go.type.tensor_type.elem_type == ty
    # same names and shapes as the float-I/O model: only the element types change
    fi, fo, _, _, _ = _boundary(f)
    assert (gi.name, go.name) == (fi.name, fo.name)
    assert gi.type.tensor_type.shape == fi.type.tensor_type.shape
    assert go.type.tensor_type.shape == fo.type.tensor_type.shape
    # no QuantizeLinear at the input, no DequantizeLinear at the output: the input is read by
    # a DequantizeLinear only, the output written by a QuantizeLinear
    assert readers and all(n.op_type == "DequantizeLinear" for n in readers)
    assert writer.op_type == "QuantizeLinear"
    assert not any(n.op_type == "QuantizeLinear" and gi.name in n.input for n in g.node)
    assert not any(n.op_type == "DequantizeLinear" and go.name in n.output for n in g.node)
    # the float-I/O model had one more Q and one more DQ (or, with a Transpose between the
    # input and its first Q as in the selfie model, the same count: a DQ moved to the input)
    sf, sq = Q.qdq_summary(f), Q.qdq_summary(q)
    assert sq["dequantize"] in (sf["dequantize"] - 1, sf["dequantize"])
    assert sq["quantize"] in (sf["quantize"] - 1, sf["quantize"])
    assert info["inputs"][0]["dtype"] == name and info["outputs"][0]["dtype"] == name


@pytest.mark.parametrize("which", ["selfie_models", "ffnet_models"])
@pytest.mark.parametrize("scheme", Q.SCHEMES)
def test_scale_and_zero_point_carried(request, which, scheme):
    """The integer input carries the removed input QuantizeLinear's scale and zero point, the
    integer output the output DequantizeLinear's, where ffnetinfer reads them (a
    DequantizeLinear reading the graph input, a QuantizeLinear writing the graph output)."""
    f, q, _ = _models(request, which)[scheme]
    q_in, dq_out = _float_boundary_qparams(f)
    io = Q.io_quantization(q)
    assert (io["input"]["scale"], io["input"]["zero_point"]) == q_in
    assert (io["output"]["scale"], io["output"]["zero_point"]) == dq_out
    assert io["input"]["dtype"] == io["output"]["dtype"] == TYPES[scheme][0]
    assert Q.io_quantization(f) == {"input": None, "output": None}


def _compare(f, q, inputs):
    """Largest |float-I/O output - dequantized quantized-I/O output| in output steps."""
    a, b = V.Runner(f), V.Runner(q)
    io = Q.io_quantization(q)
    worst = 0.0
    for x in inputs:
        ya, yb = a.run(x), b.run(x)
        raw = b.session.run(None, {b.name: Q.quantize_input(
            x, io["input"]["scale"], io["input"]["zero_point"], np.dtype(io["input"]["dtype"]))})[0]
        assert raw.dtype == np.dtype(io["output"]["dtype"])
        worst = max(worst, float(np.abs(ya.astype(np.float64) - yb).max()) / io["output"]["scale"])
    return worst


@pytest.mark.parametrize("which", ["selfie_models", "ffnet_models"])
@pytest.mark.parametrize("scheme", Q.SCHEMES)
def test_same_scores_as_float_io_model(request, media_or_skip, which, scheme):
    """On random and on real images the dequantized output is the float-I/O model's within one
    output quantization step (it is in fact equal on the CPU EP)."""
    f, q, _ = _models(request, which)[scheme]
    name, shape, layout = media.input_contract(f)
    rng = np.random.default_rng(7)
    rand = [rng.random(shape, dtype=np.float32) for _ in range(2)]
    _, valid = media_or_skip
    real = [media.to_input(im, shape, layout) for im in valid]
    assert _compare(f, q, rand) <= 1.0 + 1e-6
    assert _compare(f, q, real) <= 1.0 + 1e-6


def test_selfie_masks_agree(selfie_models, media_or_skip):
    _, valid = media_or_skip
    for scheme in Q.SCHEMES:
        f, q, _ = selfie_models[scheme]
        r = V.io_agreement(f, q, "mask", valid)
        assert r["pixel_agreement"] >= 0.999 and r["max_diff_steps"] <= 1.0 + 1e-6


def test_rejects_a_float_model(tmp_path):
    with pytest.raises(ValueError):
        Q.quantized_io(SELFIE, str(tmp_path / "x.onnx"))


def test_selfie_wholly_on_qnn_simulator(selfie_models):
    """On the QNN HTP simulator (onnxruntime-qnn wheel) the float-I/O model leaves the boundary
    Q/DQ to the CPU; the quantized-I/O model runs wholly on QNN (no-CPU-fallback session)."""
    import qnn

    why = qnn.available()
    if why:
        pytest.skip(why)
    f, q, _ = selfie_models["w8a8"]
    pf, pq = qnn.placement(f), qnn.placement(q)
    assert pf["cpu_nodes"] == 2 and {op for op, _ in pf["cpu_ops"]} == {"QuantizeLinear",
                                                                          "DequantizeLinear"}
    assert pq["wholly_on_qnn"] and pq["cpu_nodes"] == 0 and pq["no_fallback_session"]
