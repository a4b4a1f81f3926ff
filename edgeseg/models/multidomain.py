"""Multi-domain semantic segmentation: one shared encoder with Domain Attention, one head per
dataset (the multi-domain slides; DA after Wang et al., CVPR 2019).

The shared part is any zoo encoder with a :class:`DomainAttention` module at every residual
branch its ``adapter_sites()`` lists. Heads, one per domain, each with its own class list:

* CNN encoders (MobileNetV3, Mobile-Former): the slides' head, 3x3 conv -> 3x3 conv -> 1x1 conv,
  on the output of a **shared** LR-ASPP-style fusion neck. The slides share "ResNet-101 + DA +
  ASPP" and give each dataset only the three convs; LR-ASPP is this zoo's ASPP: it gates the
  deepest features (1/16 for the dilated MobileNetV3, 1/32 for Mobile-Former) with a global-pool
  sigmoid, upsamples them to 1/8 and concatenates a thin projection of the 1/8 features. The heads then run at 1/8, where two 3x3 convs
  are affordable on a phone (64x128 maps at a 512x1024 input).
* SegFormer: each domain gets its own All-MLP decoder (the slides' SegFormer version), taken from
  the single-domain SegFormer builder, on the shared MiT encoder's four feature maps.

``forward(x, domain)`` returns one domain's logits at input resolution; ``forward_all(x)`` runs
the encoder once for every head. For export, ``domain_model(name)`` is a single-head model (one
graph per domain) and ``multi_head_model()`` one graph with a logits output per domain.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.metadata import DomainInfo, ModelMetadata, default_classes, default_palette
from edgeseg.models.base import SegmentationModel
from edgeseg.models.domain_attention import DomainAttention, insert_domain_attention
from edgeseg.models.registry import create_model, register_model, tiny_config

_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class MultiDomainConfig:
    """Multi-domain model options (multi-domain slides; DA: Wang et al., CVPR 2019)."""

    # (name, class names) of each dataset, in head order; the first is the default domain.
    domains: tuple[tuple[str, tuple[str, ...]], ...]
    # N, SE adapters per DA module. Wang et al. tie N to the number of domains; default: one each.
    num_adapters: int
    # SE bottleneck ratio r of each adapter, C -> C/r -> C (16 in the SE and DA papers).
    reduction: int = 16
    # False: shared encoder + heads without DA, the slides' "without DA" comparison.
    with_domain_attention: bool = True
    # Channels of the shared fusion neck: LR-ASPP's 128 inter channels (MobileNetV3 paper, 6.3).
    neck_channels: int = 128
    # Width of each head's two 3x3 convs (the slides give none). 32 keeps one head at ~0.45
    # GMACs at 512x1024 (64 costs ~1.05, as much as the whole LR-ASPP MobileNetV3-Small).
    head_channels: int = 32

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.domains)


# --- shared neck and per-domain heads (CNN encoders) ---------------------------------------------
def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FusionNeck(nn.Module):
    """LR-ASPP-style fusion shared by every head: gated deep features, upsampled to the stride of
    the detail map, concatenated with a thin projection of it."""

    def __init__(
        self, *, detail_index: int, detail_channels: int, deep_channels: int, channels: int
    ) -> None:
        super().__init__()
        self.detail_index = detail_index
        self.context = conv_bn_relu(deep_channels, channels, 1)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(deep_channels, channels, 1), nn.Sigmoid()
        )
        # A quarter of the context width, as DeepLabv3+ shrinks low-level features (48 vs 256)
        # so the deep context dominates the fused map.
        self.detail = conv_bn_relu(detail_channels, max(8, channels // 4), 1)
        self.out_channels = channels + max(8, channels // 4)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        deep, detail = features[-1], features[self.detail_index]
        context = self.context(deep) * self.gate(deep)
        context = F.interpolate(context, size=detail.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([context, self.detail(detail)], dim=1)


def conv_head(in_channels: int, channels: int, num_classes: int) -> nn.Sequential:
    """The slides' per-dataset head: 3x3 conv -> 3x3 conv -> 1x1 conv to the dataset's classes."""
    return nn.Sequential(
        conv_bn_relu(in_channels, channels, 3),
        conv_bn_relu(channels, channels, 3),
        nn.Conv2d(channels, num_classes, 1),
    )


def detail_feature_index(strides: Sequence[int]) -> int:
    """The feature map fused with the deepest one: the map shallower than the deepest whose stride
    is closest to 8 (LR-ASPP's 1/8 detail branch), the deeper one on a tie."""
    candidates = [i for i, s in enumerate(strides) if s < strides[-1]]
    if not candidates:
        raise ConfigError(
            f"the encoder gives no feature map shallower than its deepest (strides {list(strides)}); "
            "the multi-domain conv head needs a 1/8 or similar detail map"
        )
    return min(reversed(candidates), key=lambda i: abs(math.log2(strides[i] / 8)))


# --- models -----------------------------------------------------------------------------------
class MultiDomainSegmentationModel(SegmentationModel):
    """Shared encoder (+ shared neck) and an ``nn.ModuleDict`` of heads, one per domain."""

    def __init__(
        self,
        *,
        encoder: nn.Module,
        neck: nn.Module,
        heads: dict[str, nn.Module],
        metadata: ModelMetadata,
        size_divisor: int,
        export_atol: float,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.neck = neck
        self.heads = nn.ModuleDict(heads)
        self.metadata = metadata
        self.size_divisor = size_divisor
        self.export_atol = export_atol

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.heads.keys())

    @property
    def decoder(self) -> nn.Module:
        """The first domain's decoder (neck + head): what the single-model contract calls decoder."""
        return self.domain_decoder(self.domains[0])

    def domain_decoder(self, domain: str) -> nn.Sequential:
        return nn.Sequential(self.neck, self.head(domain))

    def head(self, domain: str | None) -> nn.Module:
        if domain is None:
            return self.heads[self.domains[0]]
        if domain not in self.heads:
            raise ConfigError(
                f"unknown domain {domain!r}; {self.metadata.model} has the domains "
                f"{list(self.domains)}. Pass one of them (or None for {self.domains[0]!r})"
            )
        return self.heads[domain]

    def forward(self, x: torch.Tensor, domain: str | None = None) -> torch.Tensor:
        """Logits of ``domain`` (default: the first) at input resolution."""
        self.check_input_size(x.shape[-2], x.shape[-1], x.shape[1])
        head = self.head(domain)
        return self._upsample(head(self.neck(self.encoder(x))), x)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every domain's logits, in domain order; the encoder and neck run once."""
        self.check_input_size(x.shape[-2], x.shape[-1], x.shape[1])
        shared = self.neck(self.encoder(x))
        return tuple(self._upsample(head(shared), x) for head in self.heads.values())

    @staticmethod
    def _upsample(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def domain_model(self, domain: str) -> DomainSegmentationModel:
        """A single-head model for ``domain`` that shares this model's weights (one graph per
        domain for export); its metadata is ``metadata.for_domain(domain)``."""
        return DomainSegmentationModel(self, domain)

    def multi_head_model(self) -> MultiHeadSegmentationModel:
        """A module whose ``forward(x)`` returns every domain's logits as a tuple (one graph)."""
        return MultiHeadSegmentationModel(self)

    def domain_attention_modules(self) -> list[DomainAttention]:
        return [m for m in self.encoder.modules() if isinstance(m, DomainAttention)]


class DomainSegmentationModel(SegmentationModel):
    """One domain of a multi-domain model as a plain single-head SegmentationModel (shared weights).

    Meant for export and inference. Save checkpoints from the multi-domain model itself: this
    view's state dict is laid out as ``encoder.*`` / ``decoder.*``."""

    def __init__(self, parent: MultiDomainSegmentationModel, domain: str) -> None:
        super().__init__()
        self.encoder = parent.encoder
        self.decoder = parent.domain_decoder(domain)
        self.metadata = parent.metadata.for_domain(domain)
        self._parent = (parent,)  # in a tuple: not registered again as a submodule
        self.size_divisor = parent.size_divisor
        self.export_atol = parent.export_atol

    @property
    def parent(self) -> MultiDomainSegmentationModel:
        """The multi-domain model this view shares its weights with (saved as the checkpoint)."""
        return self._parent[0]


class MultiHeadSegmentationModel(nn.Module):
    """Every domain's logits from one graph: ``forward(x) -> tuple`` in domain order. Its metadata
    names each domain's output (``output_names``) for converters and the runtime."""

    def __init__(self, parent: MultiDomainSegmentationModel) -> None:
        super().__init__()
        self.model = parent
        self.metadata = parent.metadata.replace(
            output_names={domain: f"logits_{domain}" for domain in parent.domains}
        )
        self.size_divisor = parent.size_divisor
        self.export_atol = parent.export_atol

    @property
    def output_names(self) -> list[str]:
        return list(self.metadata.output_names.values())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.forward_all(x)

    def example_input(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        return self.model.example_input(height, width)


# --- assembly -----------------------------------------------------------------------------------
def parse_domains(
    domains: Sequence[Sequence[Any]] | None, num_classes: int | None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``[[name, [class, ...]], ...]`` (lists or tuples, as JSON gives them back) -> tuples.

    Without ``domains``, two domains ``domain0`` and ``domain1`` with ``num_classes`` classes each.
    With both, ``num_classes`` must equal the first domain's class count."""
    example = "domains=[['cityscapes', ['road', 'car', ...]], ['bdd', [...]]]"
    if domains is None:
        if num_classes is None:
            raise ConfigError(f"give the domains and their classes ({example}) or num_classes")
        classes = default_classes(num_classes)
        return (("domain0", classes), ("domain1", classes))
    if isinstance(domains, (str, bytes)) or not isinstance(domains, Sequence) or not domains:
        raise ConfigError(f"domains must be a non-empty list of [name, classes] pairs: {example}")
    parsed = []
    for entry in domains:
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise ConfigError(f"domain entry {entry!r} is not a [name, classes] pair: {example}")
        name, classes = entry
        if not isinstance(name, str) or not _DOMAIN_NAME.match(name) or hasattr(nn.ModuleDict(), name):
            raise ConfigError(
                f"domain name {name!r} must start with a letter or digit and hold only letters, "
                "digits, '_' and '-' (it names a head, an exported output and a file suffix), and "
                "not be an attribute of nn.ModuleDict such as 'keys' or 'items'"
            )
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
            raise ConfigError(f"domain {name!r}: classes must be a list of class names, got {classes!r}")
        parsed.append((name, tuple(str(c) for c in classes)))
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"domain names repeat: {names}; give every dataset its own name")
    if num_classes is not None and num_classes != len(parsed[0][1]):
        raise ConfigError(
            f"num_classes={num_classes} but the first domain {names[0]!r} has "
            f"{len(parsed[0][1])} classes; leave num_classes out when giving domains"
        )
    return tuple(parsed)


def build_multidomain(
    name: str,
    single_domain: Callable[[int], SegmentationModel],
    config: MultiDomainConfig,
    *,
    head: str,
) -> MultiDomainSegmentationModel:
    """Assemble a multi-domain model from ``single_domain(num_classes)``, a builder of the family's
    single-domain model: its encoder becomes the shared encoder; with ``head="decoder"`` each
    domain gets that family's own decoder (SegFormer's All-MLP), with ``head="conv"`` the shared
    fusion neck and the slides' conv heads."""
    if config.num_adapters < 1:
        raise ConfigError(f"num_adapters must be >= 1, got {config.num_adapters}")
    base = single_domain(len(config.domains[0][1]))
    encoder = base.encoder
    if config.with_domain_attention:
        insert_domain_attention(encoder, num_adapters=config.num_adapters, reduction=config.reduction)
    if head == "decoder":
        neck: nn.Module = nn.Identity()
        heads = {d: base.decoder if i == 0 else single_domain(len(c)).decoder
                 for i, (d, c) in enumerate(config.domains)}
    elif head == "conv":
        strides = list(encoder.strides)
        detail = detail_feature_index(strides)
        neck = FusionNeck(
            detail_index=detail,
            detail_channels=encoder.out_channels[detail],
            deep_channels=encoder.out_channels[-1],
            channels=config.neck_channels,
        )
        heads = {d: conv_head(neck.out_channels, config.head_channels, len(c)) for d, c in config.domains}
    else:
        raise ConfigError(f"head must be 'conv' or 'decoder', got {head!r}")
    first_name, first_classes = config.domains[0]
    infos = tuple(DomainInfo(d, c, default_palette(len(c))) for d, c in config.domains)
    metadata = base.metadata.replace(
        model=name, classes=first_classes, palette=infos[0].palette, domains=infos
    )
    return MultiDomainSegmentationModel(
        encoder=encoder,
        neck=neck,
        heads=heads,
        metadata=metadata,
        size_divisor=base.size_divisor,
        export_atol=base.export_atol,
    )


def _register(name: str, base_name: str, *, head: str, tiny: dict[str, Any]) -> None:
    """Register ``name``: a multi-domain model over ``base_name``'s encoder."""

    def builder(
        *,
        num_classes: int | None = None,
        domains: Sequence[Sequence[Any]] | None = None,
        num_adapters: int | None = None,
        reduction: int = 16,
        with_domain_attention: bool = True,
        neck_channels: int = 128,
        head_channels: int = 32,
        base_options: dict[str, Any] | None = None,
    ) -> MultiDomainSegmentationModel:
        """``base_options``: keyword options of the single-domain ``base_name`` builder (widths,
        output stride, ...) for the shared encoder (and, for SegFormer, the per-domain decoders)."""
        parsed = parse_domains(domains, num_classes)
        options = dict(base_options or {})
        clash = sorted({"num_classes", "classes", "domains"} & set(options))
        if clash:
            raise ConfigError(f"base_options must not set {clash}; give domains instead")
        config = MultiDomainConfig(
            domains=parsed,
            num_adapters=len(parsed) if num_adapters is None else num_adapters,
            reduction=reduction,
            with_domain_attention=with_domain_attention,
            neck_channels=neck_channels,
            head_channels=head_channels,
        )

        def single_domain(classes: int) -> SegmentationModel:
            return create_model(base_name, num_classes=classes, **options)

        return build_multidomain(name, single_domain, config, head=head)

    builder.__name__ = name
    register_model(name, tiny=tiny)(builder)


def _tiny(base_name: str, **own: Any) -> dict[str, Any]:
    base = {k: v for k, v in tiny_config(base_name).items() if k not in {"num_classes", "classes"}}
    return {"base_options": base, "reduction": 4, **own}


# One line per encoder family whose single-domain builder is in the zoo.
_register("multidomain_lraspp_mobilenetv3_small", "lraspp_mobilenetv3_small", head="conv",
          tiny=_tiny("lraspp_mobilenetv3_small", neck_channels=16, head_channels=8))
_register("multidomain_lraspp_mobilenetv3_large", "lraspp_mobilenetv3_large", head="conv",
          tiny=_tiny("lraspp_mobilenetv3_large", neck_channels=16, head_channels=8))
_register("multidomain_mobileformer_lraspp_151m", "mobileformer_lraspp_151m", head="conv",
          tiny=_tiny("mobileformer_lraspp_151m", neck_channels=16, head_channels=8))
_register("multidomain_segformer_b0", "segformer_b0", head="decoder", tiny=_tiny("segformer_b0"))
