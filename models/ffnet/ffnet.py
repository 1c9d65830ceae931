"""FFNet ("Fuss-Free Network") for Cityscapes semantic segmentation, in PyTorch.

A reimplementation of the architecture of Qualcomm-AI-research/FFNet (Mehta et al.,
"Simple and Efficient Architectures for Semantic Segmentation", CVPR-W 2022) for the five
variants that Qualcomm AI Hub publishes:

=====================  ========================================  ===========  ==========
variant                official model (FFNet repository name)    input (HxW)  logits
=====================  ========================================  ===========  ==========
ffnet_40s              segmentation_ffnet40S_dBBB_mobile         1024x2048    1/8
ffnet_54s              segmentation_ffnet54S_dBBB_mobile         1024x2048    1/8
ffnet_78s              segmentation_ffnet78S_dBBB_mobile         1024x2048    1/8
ffnet_78s_lowres       segmentation_ffnet78S_BCC_mobile_pre_down  512x1024    1/8
ffnet_122ns_lowres     segmentation_ffnet122NS_CCC_mobile_pre_down 512x1024   1/8
=====================  ========================================  ===========  ==========

The module tree mirrors the official one, so that the official Cityscapes checkpoints
(``*_state_dict_quarts.pth``; the ``*_pre_down.pth`` ones for the LowRes variants) load with
``strict=True``: ``backbone_model.*`` (ResNet-S / ResNet-NS backbone), ``head.layers.0``
(1x1 adapters), ``head.layers.1`` (top-down up-branch), ``head.layers.2`` (upsample +
concatenate, no weights), ``head.layers.3.last_layer`` (segmentation head) and, for the
LowRes variants, the fixed Gaussian anti-alias filter ``smoothing.weight`` (a buffer).

Structure in words:

* backbone, "S" (slim): stem conv3x3/2 3->32, conv3x3/2 32->64, then four stages of ResNet
  BasicBlocks, widths 64/128/192/320. The ``d`` variants (``dBBB``) use stride 2 in the
  first stage too (strides 2,2,2,2), so the four feature maps are at 1/8..1/64 of the input;
  the others (strides 1,2,2,2) at 1/4..1/32.
* backbone, "NS" (narrow-slim, 122NS): stem conv3x3/2 3->64, conv3x3/2 64->64, conv3x3 64->64
  (the 1/4 feature map), then three stages of BasicBlocks (16, 24, 20 blocks), widths
  64/128/256, each with stride 2.
* pre-downsampling (LowRes variants): the input is reflect-padded by one row top and bottom
  and filtered with a fixed 5x5 Gaussian (sigma 0.7) at stride 2 (depthwise). The backbone
  therefore sees half the resolution and the logits are 1/8 of the input again.
* head ``B_mobile`` (dBBB): 1x1 conv-BN-ReLU adapters to 64/128/128/256 channels; top-down:
  at each level a 3x3 conv-BN-ReLU "smooth" output (96/96/64/32 channels) and a 1x1
  conv-BN-ReLU "up" projection to the next finer level's width, nearest-neighbour upsampled
  and added to it; all four smooth outputs upsampled (nearest) to the finest level and
  concatenated (288 channels); segmentation head conv3x3 288->256 (+BN+ReLU), conv3x3 ->19.
* head ``C_mobile`` (BCC / CCC): adapters to 128 channels each, smooth outputs 128/16/16/16,
  concatenation 176 channels, segmentation head conv3x3 176->128 (+BN+ReLU), conv1x1 ->19.

This file only needs torch. No code of the official repository is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

NUM_CLASSES = 19
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "train", "motorcycle", "bicycle",
)


@dataclass(frozen=True)
class Variant:
    """Everything that tells one FFNet variant from another."""

    name: str                # AI Hub model id
    title: str               # human name, as in the published FFNet table
    official_name: str       # model name in Qualcomm-AI-research/FFNet's registry
    checkpoint: str          # official Cityscapes checkpoint file name
    backbone: str            # "S" or "NS"
    blocks: tuple            # BasicBlocks per stage
    strides: tuple           # stride of the first block of each stage
    widths: tuple            # output channels of each stage
    head: str                # "B" or "C" (up-head type; upsampling is nearest: "mobile")
    pre_downsampling: bool   # Gaussian /2 before the backbone (LowRes variants)
    height: int              # AI Hub input size
    width: int
    seed_params_m: float     # the published FFNet table
    seed_gflops: float
    seed_size_mb: float
    extra: dict = field(default_factory=dict)


VARIANTS = {
    v.name: v
    for v in (
        Variant("ffnet_40s", "FFNet 40S", "segmentation_ffnet40S_dBBB_mobile",
                "ffnet40S_dBBB_cityscapes_state_dict_quarts.pth",
                "S", (4, 5, 6, 4), (2, 2, 2, 2), (64, 128, 192, 320), "B", False,
                1024, 2048, 13.9, 62.3, 55.6),
        Variant("ffnet_54s", "FFNet 54S", "segmentation_ffnet54S_dBBB_mobile",
                "ffnet54S_dBBB_cityscapes_state_dict_quarts.pth",
                "S", (5, 8, 8, 5), (2, 2, 2, 2), (64, 128, 192, 320), "B", False,
                1024, 2048, 18.0, 75.7, 72.2),
        Variant("ffnet_78s", "FFNet 78S", "segmentation_ffnet78S_dBBB_mobile",
                "ffnet78S_dBBB_cityscapes_state_dict_quarts.pth",
                "S", (6, 12, 12, 8), (2, 2, 2, 2), (64, 128, 192, 320), "B", False,
                1024, 2048, 27.4, 96.0, 109.9),
        Variant("ffnet_78s_lowres", "FFNet 78S (Low Res)",
                "segmentation_ffnet78S_BCC_mobile_pre_down",
                "ffnet78S_BCC_cityscapes_state_dict_quarts_pre_down.pth",
                "S", (6, 12, 12, 8), (1, 2, 2, 2), (64, 128, 192, 320), "C", True,
                512, 1024, 26.8, 19.9, 107.3),
        Variant("ffnet_122ns_lowres", "FFNet 122NS (Low Res)",
                "segmentation_ffnet122NS_CCC_mobile_pre_down",
                "ffnet122NS_CCC_cityscapes_state_dict_quarts_pre_down.pth",
                "NS", (16, 24, 20), (2, 2, 2), (64, 128, 256), "C", True,
                512, 1024, 32.1, 127.4, 128.6),
    )
}


# --------------------------------------------------------------------------- building blocks


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.1)


class ConvBNReLU(nn.Module):
    """conv (no bias) + BN (+ ReLU); parameters under ``layers.0`` / ``layers.1``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True):
        super().__init__()
        mods = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), _bn(cout)]
        if relu:
            mods.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*mods)

    def forward(self, x):
        return self.layers(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _bn(cout)
            )

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        BasicBlock(cin, cout, stride), *[BasicBlock(cout, cout) for _ in range(blocks - 1)]
    )


class BackboneS(nn.Module):
    """ResNet-S: two stride-2 stem convs, four BasicBlock stages; four feature maps."""

    def __init__(self, blocks, strides, widths):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self.bn0 = _bn(32)
        self.relu0 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.relu1 = nn.ReLU(inplace=True)
        cin = 64
        for i, (n, s, w) in enumerate(zip(blocks, strides, widths)):
            setattr(self, f"layer{i + 1}", _stage(cin, w, n, s))
            cin = w
        self.out_channels = list(widths)

    def forward(self, x):
        x = self.relu0(self.bn0(self.conv0(x)))
        x = self.relu1(self.bn1(self.conv1(x)))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return f1, f2, f3, f4


class BackboneNS(nn.Module):
    """ResNet-NS: three-conv stem (its output is the finest feature map), three stages."""

    def __init__(self, blocks, strides, widths):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn0 = _bn(64)
        self.relu0 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.relu2 = nn.ReLU(inplace=True)
        cin = 64
        for i, (n, s, w) in enumerate(zip(blocks, strides, widths)):
            setattr(self, f"layer{i + 1}", _stage(cin, w, n, s))
            cin = w
        self.out_channels = [64, *widths]

    def forward(self, x):
        x = self.relu0(self.bn0(self.conv0(x)))
        x = self.relu1(self.bn1(self.conv1(x)))
        f1 = self.relu2(self.bn2(self.conv2(x)))
        f2 = self.layer1(f1)
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        return f1, f2, f3, f4


def _up(x, like):
    """Nearest-neighbour resize of ``x`` to the spatial size of ``like`` (mobile heads).
    The size is taken as Python ints so that graph capture bakes static Resize sizes
    (no Shape/Gather/Slice subgraph in the ONNX file)."""
    return F.interpolate(x, size=(int(like.shape[-2]), int(like.shape[-1])), mode="nearest")


class Adapters(nn.Module):
    def __init__(self, cins, couts):
        super().__init__()
        self.adapter_conv = nn.ModuleList(ConvBNReLU(a, b, k=1) for a, b in zip(cins, couts))

    def forward(self, feats):
        return [conv(f) for conv, f in zip(self.adapter_conv, feats)]


class TopDown(nn.Module):
    """Top-down path: per level a 3x3 'smooth' output and a 1x1 'up' projection that is
    upsampled and added to the next finer level."""

    def __init__(self, chans, outs):
        super().__init__()
        c4, c8, c16, c32 = chans
        o4, o8, o16, o32 = outs
        self.fam_32_sm = ConvBNReLU(c32, o32, k=3)
        self.fam_32_up = ConvBNReLU(c32, c16, k=1)
        self.fam_16_sm = ConvBNReLU(c16, o16, k=3)
        self.fam_16_up = ConvBNReLU(c16, c8, k=1)
        self.fam_8_sm = ConvBNReLU(c8, o8, k=3)
        self.fam_8_up = ConvBNReLU(c8, c4, k=1)
        self.fam_4 = ConvBNReLU(c4, o4, k=3)

    def forward(self, feats):
        f4, f8, f16, f32 = feats
        s32 = self.fam_32_sm(f32)
        x = _up(self.fam_32_up(f32), f16) + f16
        s16 = self.fam_16_sm(x)
        x = _up(self.fam_16_up(x), f8) + f8
        s8 = self.fam_8_sm(x)
        x = _up(self.fam_8_up(x), f4) + f4
        s4 = self.fam_4(x)
        return s4, s8, s16, s32


class UpsampleConcat(nn.Module):
    def forward(self, feats):
        first = feats[0]
        return torch.cat([first] + [_up(f, first) for f in feats[1:]], dim=1)


class SegHead(nn.Module):
    """conv3x3 (+bias) -> BN -> ReLU -> conv (3x3 for head B, 1x1 for head C) to classes."""

    def __init__(self, cin: int, mid: int, k_out: int, classes: int):
        super().__init__()
        self.last_layer = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1, bias=True),
            _bn(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, classes, k_out, padding=k_out // 2, bias=True),
        )

    def forward(self, x):
        return self.last_layer(x)


# head type -> (adapter widths, smooth-output widths, seg-head mid channels, last kernel)
HEADS = {
    "B": ((64, 128, 128, 256), (96, 96, 64, 32), 256, 3),
    "C": ((128, 128, 128, 128), (128, 16, 16, 16), 128, 1),
}


class UpHead(nn.Module):
    def __init__(self, backbone_chans, head: str, classes: int):
        super().__init__()
        adapt, outs, mid, k_out = HEADS[head]
        self.layers = nn.Sequential(
            Adapters(backbone_chans, adapt),
            TopDown(adapt, outs),
            UpsampleConcat(),
            SegHead(sum(outs), mid, k_out, classes),
        )

    def forward(self, feats):
        return self.layers(feats)


def gaussian_kernel(size: int = 5, sigma: float = 0.7) -> torch.Tensor:
    """The normalised 2-D Gaussian of the official pre-downsampling filter, as a depthwise
    conv weight 3x1xSxS. (The official code filters a unit impulse with
    scipy.ndimage.gaussian_filter, whose default truncation (4 sigma) covers the whole
    5x5 support, so it equals this sampled, normalised Gaussian to float precision.)"""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    k = torch.outer(g, g).to(torch.float32)
    return k.expand(3, 1, size, size).contiguous()


class FFNet(nn.Module):
    """FFNet on normalised input (ImageNet mean/std already applied); returns logits."""

    def __init__(self, variant: Variant | str, num_classes: int = NUM_CLASSES):
        super().__init__()
        v = VARIANTS[variant] if isinstance(variant, str) else variant
        self.variant = v
        backbone_cls = BackboneS if v.backbone == "S" else BackboneNS
        self.backbone_model = backbone_cls(v.blocks, v.strides, v.widths)
        self.head = UpHead(self.backbone_model.out_channels, v.head, num_classes)
        self.pre_downsampling = v.pre_downsampling
        if v.pre_downsampling:
            self.smoothing = GaussianDown()
        init_weights(self)

    def forward(self, x):
        if self.pre_downsampling:
            x = self.smoothing(x)
        return self.head(self.backbone_model(x))


class GaussianDown(nn.Module):
    """Fixed 5x5 Gaussian, stride 2, after reflect-padding one row at top and bottom (as the
    official pre-downsampling does). The kernel is a buffer named ``weight``, so the official
    checkpoints' ``smoothing.weight`` loads into it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", gaussian_kernel())

    def forward(self, x):
        # reflect-pad one row at top and bottom, written as a concat of static slices
        # (the same numbers as F.pad(x, (0, 0, 1, 1), mode="reflect"), a simpler graph)
        x = torch.cat([x[:, :, 1:2], x, x[:, :, -2:-1]], dim=2)
        return F.conv2d(x, self.weight, stride=2, groups=3)


def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Deterministic stand-in initialisation (the official recipe's: conv N(0, 0.01),
    BN identity). With it an untrained net gives near-constant logits, useless even for
    numerics checks, so the BN statistics are then *calibrated* by calibrate_bn()."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01, generator=generator)
            if m.bias is not None:
                nn.init.constant_(m.bias, 1e-4)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()


def random_init(model: FFNet, seed: int = 0) -> None:
    """He-normal weights with a fixed seed (for untrained, speed-only models): activations keep
    their scale through the depth, so quantization numerics are not trivial."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=g)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1, generator=g)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.0, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
            m.reset_running_stats()


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches) -> None:
    """Set BN running statistics from real images (``batches``: normalised NCHW tensors).
    Without this, random weights give activations that grow or vanish with depth."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for x in batches:
        model(x)
    model.train(was_training)
    for m in bns:
        m.momentum = 0.1


class Normalized(nn.Module):
    """The AI Hub contract: input ``image`` RGB [0,1] NCHW, ImageNet normalisation inside,
    output ``mask`` logits. ``self.model`` holds the official state-dict layout."""

    def __init__(self, model: FFNet):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image):
        return self.model((image - self.mean) / self.std)


def count_params(model: nn.Module) -> int:
    """Trainable parameters (buffers such as BN statistics and the Gaussian are excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, height: int, width: int) -> dict:
    """Multiply-accumulates of one forward pass at HxW, by forward hooks.

    Counted: every Conv2d (including the fixed Gaussian filter and the 1x1 shortcuts),
    one MAC per output element and kernel tap per input channel of its group. BN is folded
    into the convs by every deployment compiler and counted as 0; ReLU, add, resize and
    concat are element-wise (reported separately as ``elementwise``, not in ``macs``).
    """
    macs = 0
    elementwise = 0
    hooks = []

    def conv_hook(m, inp, out):
        nonlocal macs
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
        macs += out.numel() * k

    def elem_hook(m, inp, out):
        nonlocal elementwise
        elementwise += out.numel()

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.ReLU):
            hooks.append(m.register_forward_hook(elem_hook))
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, height, width)
        if isinstance(model, FFNet) and model.pre_downsampling:
            # the functional Gaussian conv is not an nn.Conv2d: count it by hand
            xp = F.pad(x, (0, 0, 1, 1), mode="reflect")
            oh = (xp.shape[2] - 5) // 2 + 1
            ow = (xp.shape[3] - 5) // 2 + 1
            macs += 3 * oh * ow * 25
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {"macs": macs, "elementwise": elementwise}


def build(variant: str, weights: str | None = None, seed: int = 0) -> FFNet:
    """Build a variant; with ``weights`` load an official state dict (strict)."""
    model = FFNet(variant)
    if weights:
        load_official(model, weights)
    else:
        random_init(model, seed)
    return model.eval()


def load_official(model: FFNet, path: str) -> None:
    """Load a checkpoint in Qualcomm-AI-research/FFNet's key layout (``backbone_model.*``,
    ``head.layers.*``, ``smoothing.weight``). Accepts a plain state dict, one wrapped in
    {"state_dict": ...}, and keys prefixed ``module.`` (DataParallel)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if model.pre_downsampling and "smoothing.weight" not in sd:
        # a checkpoint saved without pre-downsampling: the filter is fixed, keep ours
        sd["smoothing.weight"] = model.smoothing.weight.clone()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # BN's num_batches_tracked is harmless if absent (older checkpoints)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match {model.variant.official_name}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            "Use the checkpoint that belongs to this variant "
            f"({model.variant.checkpoint})."
        )
