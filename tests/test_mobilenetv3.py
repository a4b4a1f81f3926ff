"""MobileNetV3 + LR-ASPP: torchvision parity, paper tables, segmentation options.

The torchvision layout below is written out by hand from torchvision's source
(``models/mobilenetv3.py`` ``_mobilenet_v3_conf``, ``models/segmentation/lraspp.py``,
``ops/misc.py``), independently of edgeseg's tables, so a transcription slip on either side
shows up as a mismatch.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from edgeseg.checkpoint import load_weights  # noqa: E402
from edgeseg.errors import CheckpointError, ConfigError, InputShapeError  # noqa: E402
from edgeseg.metadata import ModelMetadata  # noqa: E402
from edgeseg.models import create_model  # noqa: E402
from edgeseg.models.layers import ConvBNAct, SqueezeExcitation, make_divisible  # noqa: E402
from edgeseg.models.mobilenetv3 import InvertedResidual  # noqa: E402

LARGE = "lraspp_mobilenetv3_large"
SMALL = "lraspp_mobilenetv3_small"
TORCHVISION_LRASPP_LARGE_PARAMS = 3_221_538  # torchvision weights meta "num_params", 21 classes

# torchvision mobilenet_v3_large(dilated=True): (in, kernel, exp, out, SE squeeze, NL, stride,
# dilation). The squeeze width is torchvision's _make_divisible(exp // 4, 8), written out.
TV_LARGE_DILATED = [
    (16, 3, 16, 16, 0, "RE", 1, 1),
    (16, 3, 64, 24, 0, "RE", 2, 1),
    (24, 3, 72, 24, 0, "RE", 1, 1),
    (24, 5, 72, 40, 24, "RE", 2, 1),
    (40, 5, 120, 40, 32, "RE", 1, 1),
    (40, 5, 120, 40, 32, "RE", 1, 1),
    (40, 3, 240, 80, 0, "HS", 2, 1),
    (80, 3, 200, 80, 0, "HS", 1, 1),
    (80, 3, 184, 80, 0, "HS", 1, 1),
    (80, 3, 184, 80, 0, "HS", 1, 1),
    (80, 3, 480, 112, 120, "HS", 1, 1),
    (112, 3, 672, 112, 168, "HS", 1, 1),
    (112, 5, 672, 160, 168, "HS", 1, 2),  # C4: stride 2 replaced by dilation 2
    (160, 5, 960, 160, 240, "HS", 1, 2),
    (160, 5, 960, 160, 240, "HS", 1, 2),
]
TV_LOW_INDEX = 4  # torchvision: stage_indices[-4], the C2 block (stride 8, 40 channels)

# The paper's tables at width 1, without the segmentation options:
# (kernel, exp size, #out, SE, NL, stride) per bneck row.
PAPER_TABLE_1_LARGE = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]
PAPER_TABLE_2_SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]


# --- the torchvision layout, generated independently -----------------------------------------
def torchvision_lraspp_large_layout(num_classes: int = 21) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``lraspp_mobilenet_v3_large(num_classes=...)`` state dict."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> None:
        shapes[f"{prefix}.0.weight"] = (cout, cin // groups, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.1.{name}"] = (cout,)
        shapes[f"{prefix}.1.num_batches_tracked"] = ()

    conv_bn("backbone.0", 3, 16, 3)
    for i, (cin, k, exp, out, squeeze, _, _, _) in enumerate(TV_LARGE_DILATED, start=1):
        prefix, j = f"backbone.{i}.block", 0
        if exp != cin:
            conv_bn(f"{prefix}.{j}", cin, exp, 1)
            j += 1
        conv_bn(f"{prefix}.{j}", exp, exp, k, groups=exp)
        j += 1
        if squeeze:
            shapes[f"{prefix}.{j}.fc1.weight"] = (squeeze, exp, 1, 1)
            shapes[f"{prefix}.{j}.fc1.bias"] = (squeeze,)
            shapes[f"{prefix}.{j}.fc2.weight"] = (exp, squeeze, 1, 1)
            shapes[f"{prefix}.{j}.fc2.bias"] = (exp,)
            j += 1
        conv_bn(f"{prefix}.{j}", exp, out, 1)
    conv_bn("backbone.16", 160, 960, 1)
    shapes["classifier.cbr.0.weight"] = (128, 960, 1, 1)
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"classifier.cbr.1.{name}"] = (128,)
    shapes["classifier.cbr.1.num_batches_tracked"] = ()
    shapes["classifier.scale.1.weight"] = (128, 960, 1, 1)
    shapes["classifier.low_classifier.weight"] = (num_classes, 40, 1, 1)
    shapes["classifier.low_classifier.bias"] = (num_classes,)
    shapes["classifier.high_classifier.weight"] = (num_classes, 128, 1, 1)
    shapes["classifier.high_classifier.bias"] = (num_classes,)
    return shapes


def _is_buffer(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def random_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Random weights and BN statistics that keep activations in a sane range."""
    g = torch.Generator().manual_seed(1)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var") or (len(shape) == 1 and key.endswith(".1.weight")):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def torchvision_reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's LR-ASPP forward in eval mode, written with torch.nn.functional only."""
    act = {"RE": F.relu, "HS": F.hardswish}

    def conv_bn(prefix, x, stride=1, dilation=1, groups=1, eps=1e-3):
        w = state[f"{prefix}.0.weight"]
        pad = (w.shape[-1] - 1) // 2 * dilation
        x = F.conv2d(x, w, stride=stride, padding=pad, dilation=dilation, groups=groups)
        return F.batch_norm(
            x, state[f"{prefix}.1.running_mean"], state[f"{prefix}.1.running_var"],
            state[f"{prefix}.1.weight"], state[f"{prefix}.1.bias"], False, 0.0, eps,
        )

    size = x.shape[-2:]
    x = F.hardswish(conv_bn("backbone.0", x, stride=2))
    low = None
    for i, (cin, _, exp, out, squeeze, nl, stride, dilation) in enumerate(TV_LARGE_DILATED, start=1):
        prefix, j, y = f"backbone.{i}.block", 0, x
        if exp != cin:
            y = act[nl](conv_bn(f"{prefix}.{j}", y))
            j += 1
        y = act[nl](conv_bn(f"{prefix}.{j}", y, stride=stride, dilation=dilation, groups=exp))
        j += 1
        if squeeze:
            s = F.adaptive_avg_pool2d(y, 1)
            s = F.relu(F.conv2d(s, state[f"{prefix}.{j}.fc1.weight"], state[f"{prefix}.{j}.fc1.bias"]))
            s = F.conv2d(s, state[f"{prefix}.{j}.fc2.weight"], state[f"{prefix}.{j}.fc2.bias"])
            y = y * F.hardsigmoid(s)
            j += 1
        y = conv_bn(f"{prefix}.{j}", y)
        x = x + y if (stride == 1 and cin == out) else y
        if i == TV_LOW_INDEX:
            low = x
    high = F.hardswish(conv_bn("backbone.16", x))
    c = "classifier"
    branch = F.relu(conv_bn(f"{c}.cbr", high, eps=1e-5))
    gate = torch.sigmoid(F.conv2d(F.adaptive_avg_pool2d(high, 1), state[f"{c}.scale.1.weight"]))
    up = F.interpolate(branch * gate, size=low.shape[-2:], mode="bilinear", align_corners=False)
    logits = F.conv2d(low, state[f"{c}.low_classifier.weight"], state[f"{c}.low_classifier.bias"])
    logits = logits + F.conv2d(up, state[f"{c}.high_classifier.weight"], state[f"{c}.high_classifier.bias"])
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


# --- parity -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def large21():
    return create_model(LARGE, num_classes=21).eval()


def test_parameter_count_matches_torchvision(large21):
    assert sum(p.numel() for p in large21.parameters()) == TORCHVISION_LRASPP_LARGE_PARAMS
    # The hand-written layout agrees with torchvision's published count too.
    layout = torchvision_lraspp_large_layout(21)
    params = sum(torch.Size(s).numel() for k, s in layout.items() if not _is_buffer(k))
    assert params == TORCHVISION_LRASPP_LARGE_PARAMS


def test_state_dict_keys_and_shapes_match_torchvision(large21):
    expected = torchvision_lraspp_large_layout(21)
    ours = {k: tuple(v.shape) for k, v in large21.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert ours == expected
    assert list(ours) == list(expected)  # same order as torchvision's module registration


def test_torchvision_layout_pth_loads_and_computes_torchvision_logits(large21, tmp_path):
    state = random_state(torchvision_lraspp_large_layout(21))
    path = tmp_path / "lraspp_mobilenet_v3_large.pth"
    torch.save(state, path)  # what torchvision's torch.save(model.state_dict()) writes
    load_weights(large21, path)  # strict, no key remapping
    for key, value in large21.state_dict().items():
        torch.testing.assert_close(value, state[key], atol=0, rtol=0)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours = large21(x)
        reference = torchvision_reference_forward(state, x)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_wrong_class_count_pth_is_refused_with_shapes(large21, tmp_path):
    path = tmp_path / "voc19.pth"
    torch.save(random_state(torchvision_lraspp_large_layout(19)), path)
    with pytest.raises(CheckpointError, match=r"low_classifier.weight: file \(19, 40, 1, 1\)"):
        load_weights(large21, path)


def test_batchnorm_settings_match_torchvision(large21):
    backbone_bns = [m for m in large21.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    layout = torchvision_lraspp_large_layout(21)
    expected = [k for k in layout if k.startswith("backbone.") and k.endswith("running_var")]
    assert len(backbone_bns) == len(expected) == 46
    assert all(bn.eps == 1e-3 and bn.momentum == 0.01 for bn in backbone_bns)
    head_bn = large21.classifier.cbr[1]
    assert (head_bn.eps, head_bn.momentum) == (1e-5, 0.1)  # torchvision's head uses the defaults


# --- paper tables, width multiplier, reduced tail ----------------------------------------------
def _rows(model) -> list[tuple]:
    """(kernel, exp, out, SE, NL, stride) of every bneck, read back from the built modules."""
    rows = []
    for block in model.encoder:
        if not isinstance(block, InvertedResidual):
            continue
        dw = next(m for m in block.block if isinstance(m, ConvBNAct) and m[0].groups > 1)
        has_se = any(isinstance(m, SqueezeExcitation) for m in block.block)
        nl = "HS" if isinstance(dw[2], nn.Hardswish) else "RE" if isinstance(dw[2], nn.ReLU) else "?"
        stride = dw[0].stride[0] * dw[0].dilation[0]  # a dilated row stands in for stride 2
        rows.append((dw[0].kernel_size[0], dw[0].out_channels, block.out_channels, has_se, nl, stride))
    return rows


@pytest.mark.parametrize("name, table, last", [
    (LARGE, PAPER_TABLE_1_LARGE, 960), (SMALL, PAPER_TABLE_2_SMALL, 576),
])
def test_layers_match_paper_tables(name, table, last):
    model = create_model(name, num_classes=3, dilated=False)
    assert _rows(model) == table
    stem, last_conv = model.encoder[0], model.encoder[-1]
    assert (stem[0].out_channels, stem[0].stride, type(stem[2])) == (16, (2, 2), nn.Hardswish)
    assert (last_conv[0].out_channels, type(last_conv[2])) == (last, nn.Hardswish)
    # Table input column: 224 -> 7x7 after the last stage without dilation.
    high = model.encoder(torch.randn(1, 3, 224, 224))[-1]
    assert high.shape[-2:] == (7, 7)


def test_se_squeezes_to_a_quarter_and_gates_with_hard_sigmoid(large21):
    se = large21.encoder[4].block[2]
    assert isinstance(se, SqueezeExcitation) and isinstance(se.scale_activation, nn.Hardsigmoid)
    assert (se.fc1.in_channels, se.fc1.out_channels) == (72, 24)  # make_divisible(72 // 4)
    x = torch.randn(2, 72, 5, 7)
    weights = se.channel_weights(x)
    assert weights.shape == (2, 72, 1, 1) and weights.min() >= 0 and weights.max() <= 1
    torch.testing.assert_close(se(x), x * weights)


def test_make_divisible_rounds_like_mobilenet():
    assert [make_divisible(v) for v in (4, 8, 12, 20, 33.6, 56, 201.6)] == [8, 8, 16, 24, 32, 56, 200]
    assert make_divisible(10) == 16  # rounding to 8 would drop more than 10%: round up instead


def test_width_multiplier_scales_every_layer():
    half = create_model(LARGE, num_classes=3, width_mult=0.5, dilated=False)
    outs = [row[2] for row in _rows(half)]
    assert outs == [8, 16, 16, 24, 24, 24, 40, 40, 40, 40, 56, 56, 80, 80, 80]
    assert half.encoder[0][0].out_channels == 8
    assert half.encoder.out_channels == [24, 480]  # 1/8 map (C2 block) and 6 x 80
    full = create_model(LARGE, num_classes=3, dilated=False)
    assert sum(p.numel() for p in half.parameters()) < 0.4 * sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize("name, tail_rows, paper_params", [
    # MobileNetV3 paper Table 7: "V3, RF2, LR-ASPP, F=128" 1.51M and "V3-Small" 0.47M (Cityscapes).
    (LARGE, 3, 1.51e6), (SMALL, 3, 0.47e6),
])
def test_reduced_tail_halves_last_stage(name, tail_rows, paper_params):
    full = create_model(name, num_classes=19)
    reduced = create_model(name, num_classes=19, reduced_tail=True)
    rows_full, rows_reduced = _rows(full), _rows(reduced)
    head = len(rows_full) - tail_rows
    assert rows_reduced[:head] == rows_full[:head]  # nothing before the last stage changes
    for a, b in zip(rows_full[head:], rows_reduced[head:]):
        assert (b[1], b[2]) == (a[1] // 2, a[2] // 2)  # expansion and output halved
    assert reduced.encoder.out_channels[-1] == full.encoder.out_channels[-1] // 2  # last 1x1 conv
    params = sum(p.numel() for p in reduced.parameters())
    assert abs(params - paper_params) / paper_params < 0.01, params


# --- output stride, sizes, feature contract ------------------------------------------------------
@pytest.mark.parametrize("name", [LARGE, SMALL])
def test_dilated_last_stage_keeps_output_stride_16(name):
    dilated = create_model(name, num_classes=3, width_mult=0.25)
    assert dilated.encoder.strides == [8, 16] and dilated.size_divisor == 16
    tail = [b for b in dilated.encoder if isinstance(b, InvertedResidual)][-3:]
    for block in tail:
        dw = next(m for m in block.block if isinstance(m, ConvBNAct) and m[0].groups > 1)
        assert (dw[0].stride, dw[0].dilation) == ((1, 1), (2, 2))
    plain = create_model(name, num_classes=3, width_mult=0.25, dilated=False)
    assert plain.encoder.strides == [8, 32] and plain.size_divisor == 32
    for model, size in ((dilated, (80, 112)), (plain, (96, 160))):  # odd multiples of the divisor
        low, high = model.encoder(torch.randn(1, 3, *size))
        for f, s in zip((low, high), model.encoder.strides):
            assert f.shape[-2:] == (size[0] // s, size[1] // s)
        assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size)


def test_size_not_multiple_of_16_is_refused_with_working_sizes():
    model = create_model(LARGE, num_classes=3, width_mult=0.25).eval()
    with pytest.raises(InputShapeError, match="multiples of 16.*use 64 or 80 x 96"):
        model(torch.randn(1, 3, 72, 96))


def test_adapter_sites_are_the_residual_branches(large21):
    sites = large21.encoder.adapter_sites()
    assert sites == [
        ("1.block", 16), ("3.block", 24), ("5.block", 40), ("6.block", 40), ("8.block", 80),
        ("9.block", 80), ("10.block", 80), ("12.block", 112), ("14.block", 160), ("15.block", 160),
    ]
    # Wrapping a branch as the multi-domain model does re-weights it before the residual add:
    # a zero attention leaves only the skip connection.
    model = create_model(LARGE, num_classes=3, width_mult=0.25).eval()
    path, channels = model.encoder.adapter_sites()[2]
    block_index = int(path.split(".")[0])
    block = model.encoder[block_index]

    class ZeroAttention(nn.Module):
        def forward(self, x):
            return x * torch.zeros(1, channels, 1, 1)

    block.block = nn.Sequential(block.block, ZeroAttention())
    x = torch.randn(1, block.block[0][0][0].in_channels, 8, 8)
    torch.testing.assert_close(block(x), x, atol=0, rtol=0)


# --- builders and metadata ----------------------------------------------------------------------
def test_metadata_from_class_names():
    model = create_model(SMALL, classes=("road", "car", "person"), input_size=(256, 512), width_mult=0.25)
    meta = model.metadata
    assert (meta.model, meta.classes, meta.input_size) == (SMALL, ("road", "car", "person"), (256, 512))
    assert meta.mean == (0.485, 0.456, 0.406) and meta.std == (0.229, 0.224, 0.225)
    assert len(meta.palette) == 3
    assert model.decoder.low_classifier.out_channels == 3
    assert create_model(SMALL, num_classes=2, width_mult=0.25).metadata.classes == ("class_0", "class_1")


@pytest.mark.parametrize("cfg, match", [
    ({}, r"give num_classes \(>= 1\), classes"),
    ({"num_classes": 3, "classes": ("a", "b")}, "num_classes=3 but 2 class names"),
    ({"num_classes": 0}, r"give num_classes \(>= 1\).*got num_classes=0"),
    ({"num_classes": 3, "width_mult": 0}, "width_mult must be > 0"),
    ({"num_classes": 3, "inter_channels": 0}, "inter_channels must be >= 1"),
    ({"num_classes": 3, "output_stride": 8}, "cannot build"),
    ({"num_classes": 3, "metadata": ModelMetadata(model="x", classes=("a", "b"))}, "num_classes=3 but metadata has 2"),
])
def test_bad_builder_arguments_are_refused(cfg, match):
    with pytest.raises(ConfigError, match=match):
        create_model(LARGE, **cfg)
