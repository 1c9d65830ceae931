"""FFNet in PyTorch: parameter counts against the published FFNet table, multiply-accumulates,
output stride, and the official state-dict key layout. Skipped without torch."""

import pytest

torch = pytest.importorskip("torch")

import ffnet as F  # noqa: E402

SEED_PARAMS_M = {
    "ffnet_40s": 13.9,
    "ffnet_54s": 18.0,
    "ffnet_78s": 27.4,
    "ffnet_78s_lowres": 26.8,
    "ffnet_122ns_lowres": 32.1,
}


@pytest.mark.parametrize("variant", sorted(SEED_PARAMS_M))
def test_parameter_count_within_1_percent_of_seed(variant):
    n = F.count_params(F.FFNet(variant)) / 1e6
    assert abs(n / SEED_PARAMS_M[variant] - 1) < 0.01, f"{variant}: {n:.3f} M"


@pytest.mark.parametrize("variant,gmacs", [("ffnet_78s_lowres", 19.9), ("ffnet_122ns_lowres", 12.74)])
def test_multiply_accumulates_at_ai_hub_resolution(variant, gmacs):
    # 78S-LowRes matches the published 19.9 "GFlops" (they are MACs). 122NS-LowRes measures
    # 12.75 G, a tenth of the published 127.4: the published figure has a slipped decimal point.
    v = F.VARIANTS[variant]
    macs = F.count_macs(F.FFNet(variant), v.height, v.width)["macs"] / 1e9
    assert abs(macs / gmacs - 1) < 0.01, f"{variant}: {macs:.2f} GMAC"


@pytest.mark.parametrize("variant,hw", [(v, (64, 128)) for v in sorted(SEED_PARAMS_M)]
                         + [("ffnet_40s", (224, 224)), ("ffnet_122ns_lowres", (224, 224))])
def test_logits_are_one_eighth_of_the_input(variant, hw):
    m = F.FFNet(variant).eval()
    with torch.no_grad():
        y = m(torch.zeros(1, 3, *hw))
    assert tuple(y.shape) == (1, 19, hw[0] // 8, hw[1] // 8)


def test_official_key_layout():
    """A few keys exactly as Qualcomm-AI-research/FFNet names them (strict loading depends on
    every one of them)."""
    keys = set(F.FFNet("ffnet_40s").state_dict())
    for k in [
        "backbone_model.conv0.weight", "backbone_model.bn0.running_var",
        "backbone_model.conv1.weight", "backbone_model.layer1.0.downsample.0.weight",
        "backbone_model.layer4.3.bn2.bias",
        "head.layers.0.adapter_conv.3.layers.0.weight",
        "head.layers.1.fam_32_sm.layers.1.running_mean", "head.layers.1.fam_4.layers.0.weight",
        "head.layers.3.last_layer.0.bias", "head.layers.3.last_layer.3.weight",
    ]:
        assert k in keys, k
    assert not any(k.startswith("smoothing") for k in keys)
    low = set(F.FFNet("ffnet_122ns_lowres").state_dict())
    assert "smoothing.weight" in low
    assert "backbone_model.conv2.weight" in low and "backbone_model.layer3.19.conv2.weight" in low
    assert not any(k.startswith("backbone_model.layer4") for k in low)
    # head C: 1x1 final conv; head B: 3x3
    sd = F.FFNet("ffnet_78s_lowres").state_dict()
    assert tuple(sd["head.layers.3.last_layer.3.weight"].shape) == (19, 128, 1, 1)
    assert tuple(F.FFNet("ffnet_78s").state_dict()["head.layers.3.last_layer.3.weight"].shape) == (19, 256, 3, 3)


def test_gaussian_equals_official_filter():
    """The pre-downsampling kernel: scipy.ndimage.gaussian_filter of a 5x5 impulse, sigma 0.7
    (computed here without scipy: a separable sampled Gaussian truncated at 4 sigma, which
    covers the 5x5 support), reflect-padded one row top and bottom, stride 2."""
    k = F.gaussian_kernel()
    assert tuple(k.shape) == (3, 1, 5, 5)
    assert abs(float(k[0].sum()) - 1) < 1e-6
    g = F.GaussianDown()
    x = torch.rand(1, 3, 20, 30)
    ref = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (0, 0, 1, 1), mode="reflect"), k, stride=2, groups=3)
    assert torch.equal(g(x), ref)


def test_load_official_rejects_a_wrong_checkpoint(tmp_path):
    p = tmp_path / "wrong.pth"
    torch.save(F.FFNet("ffnet_40s").state_dict(), p)
    with pytest.raises(ValueError, match="does not match"):
        F.load_official(F.FFNet("ffnet_54s"), str(p))
