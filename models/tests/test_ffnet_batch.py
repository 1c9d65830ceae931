"""The batch variants of models/ffnet/batch.py: a symbolic-batch FFNet export runs any batch
with each slot equal to the batch-1 export on that frame; its W8A8 quantization (batch fixed
to 1, then symbolic again) keeps the Shape ops that size Resize, so batches of 2 and 4 run;
the batch-4 model takes exactly 4 frames. Small resolution (64x128), so it is fast."""

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import batch as B  # noqa: E402
import export as E  # noqa: E402
import ffnet as F  # noqa: E402
import quantize as Q  # noqa: E402

H, W = 64, 128


def _run(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory, media_or_skip):
    d = tmp_path_factory.mktemp("batch")
    model = F.build("ffnet_40s", seed=5).eval()
    single, batched = str(d / "one.onnx"), str(d / "batch.onnx")
    E.export(model, single, H, W, trained=False)
    E.export(model, batched, H, W, trained=False, dynamic_batch=True)
    as_one, w8a8 = str(d / "as1.onnx"), str(d / "w8a8_batch.onnx")
    B.with_batch(batched, as_one, 1)
    Q.quantize(as_one, w8a8, "w8a8", media_or_skip[0][:4])
    B.with_batch(w8a8, w8a8, 0)
    batch4 = str(d / "w8a8_batch4.onnx")
    B.with_batch(w8a8, batch4, 4)
    return {"one": single, "batch": batched, "as_one": as_one, "w8a8": w8a8, "batch4": batch4}


def _frames(n):
    rng = np.random.default_rng(2)
    x = rng.random((n, 3, H, W), dtype=np.float32)
    return x * np.linspace(0.2, 1.0, n, dtype=np.float32).reshape(n, 1, 1, 1)


def test_the_symbolic_batch_export_equals_batch_one_slot_by_slot(models):
    m = onnx.load(models["batch"])
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = _frames(3)
    together = _run(models["batch"], x)
    each = np.concatenate([_run(models["one"], f[None]) for f in x])
    assert together.shape == (3, 19, H // 8, W // 8)
    assert np.abs(together - each).max() <= 1e-4 * np.abs(each).max()


def test_the_w8a8_batch_model_runs_batches_of_two_and_four_like_batch_one(models):
    for n in (2, 4):
        x = _frames(n)
        together = _run(models["w8a8"], x)
        each = np.concatenate([_run(models["w8a8"], f[None]) for f in x])
        assert together.shape[0] == n
        np.testing.assert_array_equal(together, each)


def test_the_batch4_model_takes_exactly_four_frames(models):
    dims = onnx.load(models["batch4"]).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4
    x = _frames(4)
    np.testing.assert_array_equal(_run(models["batch4"], x), _run(models["w8a8"], x))
    with pytest.raises(Exception):
        _run(models["batch4"], x[:2])
