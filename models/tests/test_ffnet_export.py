"""The ONNX export contract of AI Hub's FFNet: input 'image' float32 NCHW RGB [0,1] with the
ImageNet normalisation inside, output 'mask' 1x19xH/8xW/8 logits, static shapes; official
state dicts load (round trip); untrained exports say so. Small resolutions, so it is fast."""

import os

import pytest

np = pytest.importorskip("numpy")

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import export as E  # noqa: E402
import ffnet as F  # noqa: E402


def _shape(vi):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """ffnet_40s (the smallest variant, so the test is fast) at 224x224 and 64x128."""
    d = tmp_path_factory.mktemp("export")
    out = {}
    for key, variant, h, w in [("224", "ffnet_40s", 224, 224), ("64x128", "ffnet_40s", 64, 128)]:
        model = F.build(variant, seed=3).eval()
        path = str(d / f"{variant}_{key}.onnx")
        E.export(model, path, h, w, trained=False)
        out[key] = (model, path, h, w)
    return out


@pytest.mark.parametrize("key", ["224", "64x128"])
def test_contract_names_shapes_dtypes(exported, key):
    _, path, h, w = exported[key]
    m = onnx.load(path)
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == ["image"]
    assert [o.name for o in m.graph.output] == ["mask"]
    i, o = m.graph.input[0], m.graph.output[0]
    assert i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _shape(i) == [1, 3, h, w]  # static
    assert _shape(o) == [1, 19, h // 8, w // 8]
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = s.run(["mask"], {"image": np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)})[0]
    assert y.shape == (1, 19, h // 8, w // 8) and y.dtype == np.float32
    # no dynamic shape arithmetic left in the graph
    assert not {n.op_type for n in m.graph.node} & {"Shape", "Gather", "ConstantOfShape"}


def test_normalization_is_inside_the_graph(exported):
    """ORT on raw [0,1] RGB == PyTorch FFNet on (x - mean) / std."""
    model, path, h, w = exported["64x128"]
    x = np.random.default_rng(1).random((1, 3, h, w), dtype=np.float32)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(["mask"], {"image": x})[0]
    mean = torch.tensor(F.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(F.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model((torch.from_numpy(x) - mean) / std).numpy()
        unnormalized = model(torch.from_numpy(x)).numpy()
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-4 * scale + 1e-5
    assert np.abs(got - unnormalized).max() > 1e-2 * scale  # the test can tell the difference
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert "Sub" in ops and "Div" in ops


def test_untrained_export_is_labelled(exported):
    _, path, _, _ = exported["224"]
    m = onnx.load(path)
    assert "UNTRAINED" in m.doc_string
    assert {p.key: p.value for p in m.metadata_props}["trained"] == "no"


@pytest.mark.parametrize("variant,prefix", [("ffnet_122ns_lowres", ""), ("ffnet_40s", "module.")])
def test_state_dict_round_trip(tmp_path, variant, prefix):
    """A state dict saved in the official key layout (optionally DataParallel-prefixed)
    goes in through --weights and comes out as the same function in ONNX."""
    src = F.build(variant, seed=11).eval()
    with torch.no_grad():  # non-trivial BN statistics, so they are checked too
        for mod in src.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    sd = {prefix + k: v for k, v in src.state_dict().items()}
    ckpt = tmp_path / F.VARIANTS[variant].checkpoint
    torch.save(sd, ckpt)
    out = tmp_path / "m.onnx"
    assert E.main(["--variant", variant, "--height", "64", "--width", "64",
                   "--weights", str(ckpt), "--out", str(out)]) == 0
    m = onnx.load(str(out))
    assert {p.key: p.value for p in m.metadata_props}["trained"] == "yes"
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["mask"], {"image": x})[0]
    with torch.no_grad():
        ref = F.Normalized(src)(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-5
    # a freshly built model with another seed is different: the weights really came through
    other = F.Normalized(F.build(variant, seed=12).eval())
    with torch.no_grad():
        assert np.abs(other(torch.from_numpy(x)).numpy() - ref).max() > 1e-3


def test_export_without_weights_prints_untrained(tmp_path, capsys, media_or_skip):
    out = tmp_path / "u.onnx"
    assert E.main(["--variant", "ffnet_40s", "--height", "64", "--width", "64",
                   "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "UNTRAINED MODEL" in cap.err and "MEANINGLESS" in cap.err
    assert "[UNTRAINED]" in cap.out
    assert os.path.getsize(out) > 55e6  # 13.9 M float32 parameters


def test_build_all_finds_checkpoints(tmp_path):
    import build_all as B

    v = F.VARIANTS["ffnet_78s_lowres"]
    assert B.find_checkpoint(str(tmp_path), v.checkpoint) is None
    sub = tmp_path / "ffnet78S"
    sub.mkdir()
    plain = sub / "ffnet78S_BCC_cityscapes_state_dict_quarts.pth"  # FFNet repository's name
    plain.write_bytes(b"")
    assert B.find_checkpoint(str(tmp_path), v.checkpoint) == str(plain)
    hub = tmp_path / v.checkpoint  # AI Hub's name, preferred
    hub.write_bytes(b"")
    assert B.find_checkpoint(str(tmp_path), v.checkpoint) == str(hub)
