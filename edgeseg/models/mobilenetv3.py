"""MobileNetV3-Large/-Small encoders and the Lite R-ASPP head.

Howard et al., "Searching for MobileNetV3", ICCV 2019 (arXiv:1905.02244): Tables 1-2 give the
networks, Sec. 6.3 / Fig. 10 the segmentation setup (last stage dilated for output stride 16,
optional reduced tail, LR-ASPP head).

Layout and state-dict keys are torchvision's ``lraspp_mobilenet_v3_large`` (``backbone.<i>...``,
``classifier.cbr/scale/low_classifier/high_classifier``), so its checkpoints load with no
remapping (``edgeseg.weights.load_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata
from edgeseg.models.base import SegmentationModel, resolve_metadata
from edgeseg.models.layers import ConvBNAct, SqueezeExcitation, make_divisible
from edgeseg.models.lraspp import LRASPPHead
from edgeseg.models.registry import register_model

# The backbone's BatchNorm settings (torchvision and the TF reference both use these).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
# The paper's "NL" column: nonlinearity of a row.
ACTIVATIONS: dict[str, type[nn.Module]] = {"RE": nn.ReLU, "HS": nn.Hardswish}


@dataclass(frozen=True)
class Bneck:
    """One ``bneck`` row of the paper's Table 1 or 2, at width multiplier 1."""

    kernel: int  # "Operator": depthwise kernel, 3 or 5
    expanded: int  # "exp size": channels after the 1x1 expansion
    out: int  # "#out": channels after the 1x1 projection
    se: bool  # "SE": squeeze-and-excite after the depthwise conv
    nl: str  # "NL": "RE" (ReLU) or "HS" (hard-swish)
    stride: int  # "s": stride of the depthwise conv


# Table 1: MobileNetV3-Large. Comments: input size of the row at 224x224 input x in channels.
LARGE_BNECKS = (
    Bneck(3, 16, 16, False, "RE", 1),  # 112^2 x 16
    Bneck(3, 64, 24, False, "RE", 2),  # 112^2 x 16   (C1 -> stride 4)
    Bneck(3, 72, 24, False, "RE", 1),  # 56^2 x 24
    Bneck(5, 72, 40, True, "RE", 2),  # 56^2 x 24    (C2 -> stride 8)
    Bneck(5, 120, 40, True, "RE", 1),  # 28^2 x 40
    Bneck(5, 120, 40, True, "RE", 1),  # 28^2 x 40
    Bneck(3, 240, 80, False, "HS", 2),  # 28^2 x 40   (C3 -> stride 16)
    Bneck(3, 200, 80, False, "HS", 1),  # 14^2 x 80
    Bneck(3, 184, 80, False, "HS", 1),  # 14^2 x 80
    Bneck(3, 184, 80, False, "HS", 1),  # 14^2 x 80
    Bneck(3, 480, 112, True, "HS", 1),  # 14^2 x 80
    Bneck(3, 672, 112, True, "HS", 1),  # 14^2 x 112
    Bneck(5, 672, 160, True, "HS", 2),  # 14^2 x 112  (C4 -> stride 32, or 16 dilated)
    Bneck(5, 960, 160, True, "HS", 1),  # 7^2 x 160
    Bneck(5, 960, 160, True, "HS", 1),  # 7^2 x 160
)

# Table 2: MobileNetV3-Small.
SMALL_BNECKS = (
    Bneck(3, 16, 16, True, "RE", 2),  # 112^2 x 16   (C1 -> stride 4)
    Bneck(3, 72, 24, False, "RE", 2),  # 56^2 x 16   (C2 -> stride 8)
    Bneck(3, 88, 24, False, "RE", 1),  # 28^2 x 24
    Bneck(5, 96, 40, True, "HS", 2),  # 28^2 x 24    (C3 -> stride 16)
    Bneck(5, 240, 40, True, "HS", 1),  # 14^2 x 40
    Bneck(5, 240, 40, True, "HS", 1),  # 14^2 x 40
    Bneck(5, 120, 48, True, "HS", 1),  # 14^2 x 40
    Bneck(5, 144, 48, True, "HS", 1),  # 14^2 x 48
    Bneck(5, 288, 96, True, "HS", 2),  # 14^2 x 48   (C4 -> stride 32, or 16 dilated)
    Bneck(5, 576, 96, True, "HS", 1),  # 7^2 x 96
    Bneck(5, 576, 96, True, "HS", 1),  # 7^2 x 96
)


@dataclass(frozen=True)
class MobileNetV3Config:
    """A MobileNetV3 encoder: the paper's table plus the segmentation options of Sec. 6.3."""

    bnecks: tuple[Bneck, ...]  # Table 1 (Large) or Table 2 (Small) bneck rows
    stem_channels: int = 16  # Tables 1-2 first row: conv2d 3x3, stride 2, 16 out, HS
    last_conv_expansion: int = 6  # Tables 1-2 "conv2d 1x1" after the bnecks: 960 = 6 x 160 (Large), 576 = 6 x 96 (Small)
    width_mult: float = 1.0  # Sec. 6.1.2: multiplies every channel count, rounded to multiples of 8
    dilated: bool = True  # Sec. 6.3: last stage at stride 1 with dilation 2 -> output stride 16
    reduced_tail: bool = False  # Sec. 6.3 / Table 7 "RF2": channels of the last stage (and last conv) halved

    def __post_init__(self) -> None:
        if not self.width_mult > 0:
            raise ConfigError(f"width_mult must be > 0 (1.0 is the paper's model), got {self.width_mult}")
        for row in self.bnecks:
            if row.nl not in ACTIVATIONS or row.stride not in (1, 2) or row.kernel % 2 == 0:
                raise ConfigError(
                    f"bneck row {row} is invalid: NL must be one of {sorted(ACTIVATIONS)}, "
                    "stride 1 or 2, kernel odd"
                )

    @property
    def tail_start(self) -> int:
        """Index of the first row of the last stage (the last stride-2 row)."""
        return max(i for i, row in enumerate(self.bnecks) if row.stride == 2)

    def channels(self, value: int) -> int:
        return make_divisible(value * self.width_mult, 8)


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block with every option resolved to concrete numbers."""

    in_channels: int
    expanded: int
    out_channels: int
    kernel: int
    se: bool
    nl: str
    stride: int
    dilation: int


def block_specs(config: MobileNetV3Config) -> list[BlockSpec]:
    """The table rows after reduced tail, dilation and width multiplier are applied.

    The reduced tail halves every channel count of the last stage, the first row's expansion
    included (672 -> 336 in Large, 288 -> 144 in Small), as the paper's reference code does
    (TF DeepLab ``mobilenet_v3_large_seg``); that is the model of the paper's Table 7 (1.51M
    parameters for Large with 19 classes). torchvision's ``_reduced_tail`` keeps the first
    row's expansion at full width, so its reduced-tail weights do not load here.
    """
    specs = []
    in_channels = config.channels(config.stem_channels)
    for i, row in enumerate(config.bnecks):
        in_tail = i >= config.tail_start
        divider = 2 if config.reduced_tail and in_tail else 1
        dilated = config.dilated and in_tail
        spec = BlockSpec(
            in_channels=in_channels,
            expanded=config.channels(row.expanded // divider),
            out_channels=config.channels(row.out // divider),
            kernel=row.kernel,
            se=row.se,
            nl=row.nl,
            # Dilation replaces the stride: the map stays at stride 16, the receptive field grows.
            stride=1 if dilated else row.stride,
            dilation=2 if dilated else 1,
        )
        specs.append(spec)
        in_channels = spec.out_channels
    return specs


def _conv_bn(
    cin: int, cout: int, kernel: int, act: type[nn.Module] | None,
    *, stride: int = 1, dilation: int = 1, groups: int = 1,
) -> ConvBNAct:
    """ConvBNAct with the backbone's BatchNorm settings."""
    return ConvBNAct(
        cin, cout, kernel, stride=stride, dilation=dilation, groups=groups, activation=act,
        bn_eps=BN_EPS, bn_momentum=BN_MOMENTUM,
    )


class InvertedResidual(nn.Module):
    """1x1 expand -> kxk depthwise (-> SE) -> 1x1 linear project, plus the input when shapes match.

    ``block`` is the residual branch: the Domain Attention adapters of multi-domain models wrap
    it (``Sequential(block, DA)``) so they re-weight the branch before the add.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        act = ACTIVATIONS[spec.nl]
        layers: list[nn.Module] = []
        if spec.expanded != spec.in_channels:  # Table 1 row 1: exp size = input, no expansion conv
            layers.append(_conv_bn(spec.in_channels, spec.expanded, 1, act))
        layers.append(_conv_bn(
            spec.expanded, spec.expanded, spec.kernel, act,
            stride=spec.stride, dilation=spec.dilation, groups=spec.expanded,
        ))
        if spec.se:  # squeeze to a quarter of the expansion (Sec. 5.3)
            layers.append(SqueezeExcitation(spec.expanded, make_divisible(spec.expanded // 4, 8)))
        layers.append(_conv_bn(spec.expanded, spec.out_channels, 1, None))  # linear bottleneck
        self.block = nn.Sequential(*layers)
        self.use_residual = spec.stride == 1 and spec.in_channels == spec.out_channels
        self.out_channels = spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV3Encoder(nn.Sequential):
    """Stem, bnecks and last 1x1 conv as one Sequential (torchvision's ``features`` indices).

    Returns ``[low, high]``: the output of the first layer at stride 8 (the C2 block, as
    torchvision's LR-ASPP takes it, not the end of that stage) and of the last 1x1 conv
    (stride 16 dilated, 32 otherwise).
    """

    def __init__(self, config: MobileNetV3Config) -> None:
        specs = block_specs(config)
        stem = _conv_bn(3, specs[0].in_channels, 3, nn.Hardswish, stride=2)
        last_in = specs[-1].out_channels
        last = _conv_bn(last_in, config.last_conv_expansion * last_in, 1, nn.Hardswish)
        super().__init__(stem, *[InvertedResidual(s) for s in specs], last)
        self.config = config

        layer_strides = []
        stride = 1
        for s in [2] + [spec.stride for spec in specs] + [1]:
            stride *= s
            layer_strides.append(stride)
        self.feature_indices = (layer_strides.index(8), len(self) - 1)
        self.strides = [layer_strides[i] for i in self.feature_indices]
        self.out_channels = [self[i].out_channels for i in self.feature_indices]
        _init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, layer in enumerate(self):
            x = layer(x)
            if i in self.feature_indices:
                features.append(x)
        return features

    def adapter_sites(self) -> list[tuple[str, int]]:
        """``(path, channels)`` of every residual branch (blocks with a skip connection)."""
        return [
            (f"{i}.block", layer.out_channels)
            for i, layer in enumerate(self)
            if isinstance(layer, InvertedResidual) and layer.use_residual
        ]


def _init_like_torchvision(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class LRASPP(SegmentationModel):
    """MobileNetV3 encoder + LR-ASPP head. Submodules keep torchvision's names ``backbone`` and
    ``classifier`` (state-dict parity); ``encoder`` / ``decoder`` are aliases of them."""

    def __init__(
        self, backbone: MobileNetV3Encoder, num_classes: int, inter_channels: int, metadata: ModelMetadata
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = LRASPPHead(
            backbone.out_channels[0], backbone.out_channels[-1], num_classes, inter_channels
        )
        self.metadata = metadata
        # Every stride-s map is exactly H/s x W/s only when H and W are multiples of the
        # deepest stride; otherwise the 1/8 and 1/16 maps round differently.
        self.size_divisor = max(backbone.strides)

    @property
    def encoder(self) -> MobileNetV3Encoder:
        return self.backbone

    @property
    def decoder(self) -> LRASPPHead:
        return self.classifier


def _lraspp_mobilenetv3(
    config: MobileNetV3Config, inter_channels: int, metadata: ModelMetadata
) -> LRASPP:
    if inter_channels < 1:
        raise ConfigError(f"inter_channels must be >= 1 (the paper uses 128), got {inter_channels}")
    return LRASPP(MobileNetV3Encoder(config), metadata.num_classes, inter_channels, metadata)


_TINY = {"width_mult": 0.25, "inter_channels": 16}


@register_model("lraspp_mobilenetv3_large", tiny=_TINY)
def lraspp_mobilenetv3_large(
    *,
    num_classes: int | None = None,
    classes: tuple[str, ...] | None = None,
    palette: tuple[tuple[int, int, int], ...] | None = None,
    input_size: tuple[int, int] | None = None,
    metadata: ModelMetadata | None = None,
    width_mult: float = 1.0,
    dilated: bool = True,
    reduced_tail: bool = False,
    inter_channels: int = 128,
) -> LRASPP:
    """LR-ASPP on MobileNetV3-Large. The defaults are torchvision's ``lraspp_mobilenet_v3_large``
    (3,221,538 parameters with 21 classes); ``reduced_tail=True`` is the paper's Table 7 model."""
    name = "lraspp_mobilenetv3_large"
    config = MobileNetV3Config(
        LARGE_BNECKS, width_mult=width_mult, dilated=dilated, reduced_tail=reduced_tail
    )
    return _lraspp_mobilenetv3(
        config, inter_channels, resolve_metadata(name, num_classes=num_classes, classes=classes,
                                                 palette=palette, input_size=input_size, metadata=metadata)
    )


@register_model("lraspp_mobilenetv3_small", tiny=_TINY)
def lraspp_mobilenetv3_small(
    *,
    num_classes: int | None = None,
    classes: tuple[str, ...] | None = None,
    palette: tuple[tuple[int, int, int], ...] | None = None,
    input_size: tuple[int, int] | None = None,
    metadata: ModelMetadata | None = None,
    width_mult: float = 1.0,
    dilated: bool = True,
    reduced_tail: bool = False,
    inter_channels: int = 128,
) -> LRASPP:
    """LR-ASPP on MobileNetV3-Small (the paper's Table 7 last row uses ``reduced_tail=True``)."""
    name = "lraspp_mobilenetv3_small"
    config = MobileNetV3Config(
        SMALL_BNECKS, width_mult=width_mult, dilated=dilated, reduced_tail=reduced_tail
    )
    return _lraspp_mobilenetv3(
        config, inter_channels, resolve_metadata(name, num_classes=num_classes, classes=classes,
                                                 palette=palette, input_size=input_size, metadata=metadata)
    )
