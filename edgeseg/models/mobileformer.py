"""Mobile-Former (Chen et al., "Mobile-Former: Bridging MobileNet and Transformer", CVPR 2022).

A MobileNet branch (local features ``x``) and a Transformer over ``M <= 6`` learnable global
tokens ``z`` (``M x d``, randomly initialized) run in parallel, joined in every block by two
lightweight cross-attention bridges (``H`` heads; ``x`` and ``z`` are split into heads along
channels):

* Mobile -> Former: ``z = z + [Attn(z_h W_h^Q, x_h, x_h)]_{h=1:H} W^O`` (no projection on ``x``);
* Former -> Mobile: ``x = x + [Attn(x_h, z_h W_h^K, z_h W_h^V)]_{h=1:H}`` (none on ``x`` either).

Each Mobile sub-block uses dynamic ReLU ``max(a1 * x, a2 * x)`` whose per-channel slopes come
from the first global token. One block runs: Mobile->Former, Former (token self-attention + FFN),
Mobile (with the updated tokens' dynamic ReLU), Former->Mobile.

Where the paper's text is silent, we follow the authors' official release (AAboys/MobileFormer),
because the paper's parameter and MAdd figures were measured on it:

* the Former's self-attention projects only the query (keys = values = tokens), FFN ratio 2,
  post-LayerNorm after attention and after the FFN;
* the Mobile->Former bridge gates its attention output per channel by
  ``2 * hard_sigmoid(z W_gate)`` before ``W^O`` (``bridge_gate``; set False for the bare formula);
* dynamic ReLU slopes ``a1 in [0, 2]``, ``a2 in [-1, 1]`` from ``token0 -> FC(d/4) -> ReLU ->
  FC(2C) -> hard_sigmoid``; ReLU-free after the projections, like MobileNetV2;
* a "down" block (stride 2) is dw(expand, stride 2) -> pw -> dw(expand) -> pw with a residual
  around the second half; the 26M variant uses 4-group pointwise convs with channel shuffles;
* the classifier runs a last Mobile->Former bridge, a 1x1 conv (x6), pools, concatenates the
  first token and applies FC -> BN -> hard-swish -> FC.

File order: configs (the paper's tables), layers, blocks, encoder, classifier, segmentation
model, builders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata
from edgeseg.models.base import SegmentationModel, resolve_metadata
from edgeseg.models.layers import ConvBNAct, make_divisible
from edgeseg.models.lraspp import LRASPPHead
from edgeseg.models.registry import register_model

# --------------------------------------------------------------------------------------------
# Configs: one row per block of the paper's variant tables (Table 1 gives 294M; the appendix
# tables give the other six), in the numbers of the official release.
# --------------------------------------------------------------------------------------------


class BlockRow(NamedTuple):
    """One row of a Mobile-Former variant table.

    kind: "lite" = bneck-lite (dw 3x3 expand -> pw project, no bridges), "down" = Mobile-Former
        block with stride 2 (dw expand -> pw -> dw expand -> pw), "block" = Mobile-Former block
        (pw expand -> dw -> pw).
    expansion: channel expansion of the first (or only) expanding conv, relative to its input.
    out: output channels.
    stride: 1 or 2.
    expansion2: "down" only: expansion of the second dw conv, relative to ``out``.
    """

    kind: str
    expansion: int
    out: int
    stride: int
    expansion2: int = 0


def _rows(*rows: tuple) -> tuple[BlockRow, ...]:
    return tuple(BlockRow(*r) for r in rows)


@dataclass(frozen=True)
class MobileFormerConfig:
    """One Mobile-Former variant. Field comments cite the paper's tables (Table 1 for 294M, the
    appendix variant tables for the others); ``params_m`` / ``madds_m`` are the published
    ImageNet classifier figures (Table 1 / the variants' rows of the ImageNet comparison table)."""

    name: str  # paper name, e.g. "mobile-former-294m"
    stem_channels: int  # "stem" row: 3x3 conv, stride 2
    blocks: tuple[BlockRow, ...]  # the block rows, in order
    num_tokens: int  # M, "#tokens" column (6 for >= 151M, 4 for 96M, 3 for 52M/26M)
    token_dim: int  # d, token dimension (192 for >= 151M, 128 below)
    classifier_hidden: int  # "FC" row: width of the classifier's hidden layer
    params_m: float  # published classifier parameters, millions
    madds_m: float  # published multiply-adds at 224x224, millions (the variant's name)
    groups: int = 1  # pointwise-conv groups: 4 for 26M (grouped pw + shuffle), 1 otherwise
    bridge_heads: int = 2  # H in both bridges (paper: 2 heads)
    former_heads: int = 4  # heads of the Former's token self-attention (official release)
    ffn_expansion: int = 2  # Former FFN ratio: 2 instead of 4 (paper, Sec. 3.3)
    hyper_reduction: int = 4  # dynamic-ReLU hyper-function bottleneck d -> d/4 (DY-ReLU paper)
    last_expansion: int = 6  # classifier 1x1 conv expansion ("conv 1x1" row: 6 x last channels)
    bridge_gate: bool = True  # Mobile->Former output gate of the official release (see docstring)
    width_mult: float = 1.0  # scales every Mobile channel count (1.0 = the paper)

    def __post_init__(self) -> None:
        if not 1 <= self.num_tokens <= 6:
            raise ConfigError(f"{self.name}: num_tokens={self.num_tokens}; Mobile-Former uses 1..6")
        for label, divisor in (("former_heads", self.former_heads),
                               ("hyper_reduction", self.hyper_reduction)):
            if self.token_dim % divisor:
                raise ConfigError(
                    f"{self.name}: token_dim={self.token_dim} must be divisible by "
                    f"{label}={divisor}; use a multiple of {divisor}"
                )
        if self.width_mult <= 0:
            raise ConfigError(f"{self.name}: width_mult={self.width_mult} must be > 0")

    def channels(self, c: int) -> int:
        """Width-scaled channel count: a multiple of 4 (heads, groups and shuffles need it)."""
        return make_divisible(c * self.width_mult, 4)


# Rows: (kind, expansion, out, stride, expansion2).
VARIANTS: dict[str, MobileFormerConfig] = {
    "508m": MobileFormerConfig(
        "mobile-former-508m", stem_channels=24, num_tokens=6, token_dim=192,
        classifier_hidden=1920, params_m=14.0, madds_m=508,
        blocks=_rows(
            ("lite", 2, 24, 1),  # 112x112
            ("down", 6, 40, 2, 4), ("block", 3, 40, 1),  # 56x56
            ("down", 6, 72, 2, 4), ("block", 3, 72, 1),  # 28x28
            ("down", 6, 128, 2, 4), ("block", 4, 128, 1),  # 14x14
            ("block", 6, 176, 1), ("block", 6, 176, 1),
            ("down", 6, 240, 2, 4), ("block", 6, 240, 1), ("block", 6, 240, 1),  # 7x7
        ),
    ),
    "294m": MobileFormerConfig(
        "mobile-former-294m", stem_channels=16, num_tokens=6, token_dim=192,
        classifier_hidden=1920, params_m=11.4, madds_m=294,
        blocks=_rows(
            ("lite", 2, 16, 1),  # 112x112
            ("down", 6, 24, 2, 4), ("block", 4, 24, 1),  # 56x56
            ("down", 6, 48, 2, 4), ("block", 4, 48, 1),  # 28x28
            ("down", 6, 96, 2, 4), ("block", 4, 96, 1),  # 14x14
            ("block", 6, 128, 1), ("block", 6, 128, 1),
            ("down", 6, 192, 2, 4), ("block", 6, 192, 1), ("block", 6, 192, 1),  # 7x7
        ),
    ),
    "214m": MobileFormerConfig(
        "mobile-former-214m", stem_channels=12, num_tokens=6, token_dim=192,
        classifier_hidden=1600, params_m=9.4, madds_m=214,
        blocks=_rows(
            ("lite", 2, 12, 1),  # 112x112
            ("down", 6, 20, 2, 4), ("block", 3, 20, 1),  # 56x56
            ("down", 6, 40, 2, 4), ("block", 4, 40, 1),  # 28x28
            ("down", 6, 80, 2, 4), ("block", 4, 80, 1),  # 14x14
            ("block", 6, 112, 1), ("block", 6, 112, 1),
            ("down", 6, 160, 2, 4), ("block", 6, 160, 1), ("block", 6, 160, 1),  # 7x7
        ),
    ),
    "151m": MobileFormerConfig(
        "mobile-former-151m", stem_channels=12, num_tokens=6, token_dim=192,
        classifier_hidden=1280, params_m=7.6, madds_m=151,
        blocks=_rows(
            ("lite", 2, 12, 1),  # 112x112
            ("down", 6, 16, 2, 4), ("block", 3, 16, 1),  # 56x56
            ("down", 6, 32, 2, 4), ("block", 3, 32, 1),  # 28x28
            ("down", 6, 64, 2, 4), ("block", 4, 64, 1),  # 14x14
            ("block", 6, 88, 1), ("block", 6, 88, 1),
            ("down", 6, 128, 2, 4), ("block", 6, 128, 1), ("block", 6, 128, 1),  # 7x7
        ),
    ),
    "96m": MobileFormerConfig(
        "mobile-former-96m", stem_channels=12, num_tokens=4, token_dim=128,
        classifier_hidden=1280, params_m=4.6, madds_m=96,
        blocks=_rows(
            ("lite", 2, 12, 1),  # 112x112
            ("down", 6, 16, 2, 4),  # 56x56
            ("down", 6, 32, 2, 4), ("block", 3, 32, 1),  # 28x28
            ("down", 6, 64, 2, 4), ("block", 4, 64, 1), ("block", 6, 88, 1),  # 14x14
            ("down", 6, 128, 2, 4), ("block", 6, 128, 1),  # 7x7
        ),
    ),
    "52m": MobileFormerConfig(
        "mobile-former-52m", stem_channels=8, num_tokens=3, token_dim=128,
        classifier_hidden=1024, params_m=3.5, madds_m=52,
        blocks=_rows(
            ("lite", 3, 12, 2),  # 56x56
            ("block", 3, 12, 1),
            ("down", 6, 24, 2, 4), ("block", 3, 24, 1),  # 28x28
            ("down", 6, 48, 2, 4), ("block", 4, 48, 1), ("block", 6, 64, 1),  # 14x14
            ("down", 6, 96, 2, 4), ("block", 6, 96, 1),  # 7x7
        ),
    ),
    # 26M: the 52M table with 4-group pointwise convs (and channel shuffles).
    "26m": MobileFormerConfig(
        "mobile-former-26m", stem_channels=8, num_tokens=3, token_dim=128,
        classifier_hidden=1024, params_m=3.2, madds_m=26, groups=4,
        blocks=_rows(
            ("lite", 3, 12, 2),  # 56x56
            ("block", 3, 12, 1),
            ("down", 6, 24, 2, 4), ("block", 3, 24, 1),  # 28x28
            ("down", 6, 48, 2, 4), ("block", 4, 48, 1), ("block", 6, 64, 1),  # 14x14
            ("down", 6, 96, 2, 4), ("block", 6, 96, 1),  # 7x7
        ),
    ),
}


def variant_config(variant: str) -> MobileFormerConfig:
    key = variant.lower().removeprefix("mobile-former-").removeprefix("mobileformer_")
    if key not in VARIANTS:
        raise ConfigError(
            f"unknown Mobile-Former variant {variant!r}; choose one of {', '.join(VARIANTS)}"
        )
    return VARIANTS[key]


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> ConvBNAct:
    """Conv (no bias) + BatchNorm, no activation: dynamic ReLU (or nothing) follows."""
    return ConvBNAct(cin, cout, kernel, stride=stride, groups=groups, activation=None)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: lets grouped pointwise convs (26M) mix across groups."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _pointwise(cin: int, cout: int, groups: int) -> nn.Module:
    """1x1 ConvBN; grouped convs are followed by a shuffle so the next layer sees every group."""
    if groups == 1:
        return _conv_bn(cin, cout, 1)
    return nn.Sequential(_conv_bn(cin, cout, 1, groups=groups), ChannelShuffle(groups))


class DynamicReLU(nn.Module):
    """Dynamic ReLU (Chen et al. 2020), ``max(a1 * x, a2 * x)`` per channel, with the slopes
    computed from the first global token: ``a1 in [0, 2]`` (1 at rest), ``a2 in [-1, 1]``."""

    def __init__(self, channels: int, token_dim: int, reduction: int):
        super().__init__()
        self.hyper = nn.Sequential(
            nn.Linear(token_dim, token_dim // reduction),
            nn.ReLU(),
            nn.Linear(token_dim // reduction, 2 * channels),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        slopes = self.hyper(token)[:, :, None, None]  # (N, 2C, 1, 1)
        a1, a2 = slopes.chunk(2, dim=1)
        return torch.maximum(x * (2 * a1), x * (2 * a2 - 1))


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, heads, C / heads, H * W): heads are contiguous channel groups."""
    n, c, h, w = x.shape
    return x.reshape(n, heads, c // heads, h * w)


class MobileToFormer(nn.Module):
    """``z + [Attn(z_h W_h^Q, x_h, x_h)]_h W^O``, then LayerNorm: the tokens read the feature
    map, whose pixels serve as keys and values without any projection (the paper's saving)."""

    def __init__(self, channels: int, token_dim: int, heads: int, gate: bool):
        super().__init__()
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.query = nn.Linear(token_dim, channels)
        self.gate = nn.Sequential(nn.Linear(token_dim, channels), nn.Hardsigmoid()) if gate else None
        self.out = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n, m, _ = z.shape
        kv = _split_heads(x, self.heads)  # (N, h, c, HW)
        q = self.query(z).reshape(n, m, self.heads, -1).transpose(1, 2)  # (N, h, M, c)
        attn = torch.softmax(torch.matmul(q, kv) * self.scale, dim=-1)  # (N, h, M, HW)
        read = torch.matmul(attn, kv.transpose(-1, -2)).transpose(1, 2).reshape(n, m, -1)
        if self.gate is not None:
            read = read * (2 * self.gate(z))
        return self.norm(z + self.out(read))


class FormerToMobile(nn.Module):
    """``x + [Attn(x_h, z_h W_h^K, z_h W_h^V)]_h``: every pixel queries the few tokens; the
    pixels are used as queries as they are, so the bridge costs O(HW * M * C)."""

    def __init__(self, channels: int, token_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.key = nn.Linear(token_dim, channels)
        self.value = nn.Linear(token_dim, channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n, m, _ = z.shape
        q = _split_heads(x, self.heads).transpose(-1, -2)  # (N, h, HW, c)
        k = self.key(z).reshape(n, m, self.heads, -1).permute(0, 2, 3, 1)  # (N, h, c, M)
        v = self.value(z).reshape(n, m, self.heads, -1).transpose(1, 2)  # (N, h, M, c)
        attn = torch.softmax(torch.matmul(q, k) * self.scale, dim=-1)  # (N, h, HW, M)
        update = torch.matmul(attn, v).transpose(-1, -2).reshape(x.shape)
        return x + update


class Former(nn.Module):
    """Post-norm Transformer layer over the M tokens: self-attention with a query projection
    only (keys = values = tokens, official release), output projection, FFN (ratio 2, GELU)."""

    def __init__(self, token_dim: int, heads: int, ffn_expansion: int):
        super().__init__()
        self.heads = heads
        self.scale = (token_dim // heads) ** -0.5
        self.query = nn.Linear(token_dim, token_dim)
        self.out = nn.Linear(token_dim, token_dim)
        self.norm1 = nn.LayerNorm(token_dim)
        self.ffn = nn.Sequential(
            nn.Linear(token_dim, token_dim * ffn_expansion),
            nn.GELU(),
            nn.Linear(token_dim * ffn_expansion, token_dim),
        )
        self.norm2 = nn.LayerNorm(token_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, m, d = z.shape
        kv = z.reshape(n, m, self.heads, -1).transpose(1, 2)  # (N, h, M, d/h)
        q = self.query(z).reshape(n, m, self.heads, -1).transpose(1, 2)
        attn = torch.softmax(torch.matmul(q, kv.transpose(-1, -2)) * self.scale, dim=-1)
        mixed = torch.matmul(attn, kv).transpose(1, 2).reshape(n, m, d)
        z = self.norm1(z + self.out(mixed))
        return self.norm2(z + self.ffn(z))


# --------------------------------------------------------------------------------------------
# Mobile sub-blocks: forward(x, token0) -> x. ``project`` is the last layer of each residual
# branch: its output is what a Domain Attention adapter re-weights before the residual add.
# --------------------------------------------------------------------------------------------


class InvertedBottleneck(nn.Module):
    """pw expand -> DY-ReLU -> dw 3x3 -> DY-ReLU -> pw project (+ input when shapes match)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, cfg: MobileFormerConfig):
        super().__init__()
        hidden = cin * expansion
        self.expand = _pointwise(cin, hidden, cfg.groups)
        self.act1 = DynamicReLU(hidden, cfg.token_dim, cfg.hyper_reduction)
        self.depthwise = _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.act2 = DynamicReLU(hidden, cfg.token_dim, cfg.hyper_reduction)
        self.project = _pointwise(hidden, cout, cfg.groups)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.expand(x), token)
        y = self.project(self.act2(self.depthwise(y), token))
        return x + y if self.residual else y


class DownsampleBottleneck(nn.Module):
    """Stride-2 block: dw 3x3 (expand, stride 2) -> DY-ReLU -> pw, then a residual
    dw 3x3 (expand) -> DY-ReLU -> pw on top, which keeps the downsampling cheap."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, expansion2: int,
                 cfg: MobileFormerConfig):
        super().__init__()
        hidden1, hidden2 = cin * expansion, cout * expansion2
        self.depthwise1 = _conv_bn(cin, hidden1, 3, stride, groups=cin)
        self.shuffle1 = ChannelShuffle(cin) if cfg.groups > 1 else nn.Identity()
        self.act1 = DynamicReLU(hidden1, cfg.token_dim, cfg.hyper_reduction)
        self.pointwise1 = _pointwise(hidden1, cout, cfg.groups)
        self.depthwise2 = _conv_bn(cout, hidden2, 3, 1, groups=cout)
        self.shuffle2 = ChannelShuffle(cout) if cfg.groups > 1 else nn.Identity()
        self.act2 = DynamicReLU(hidden2, cfg.token_dim, cfg.hyper_reduction)
        self.project = _pointwise(hidden2, cout, cfg.groups)

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.shuffle1(self.depthwise1(x)), token)
        y = self.pointwise1(y)
        return y + self.project(self.act2(self.shuffle2(self.depthwise2(y)), token))


class LiteBottleneck(nn.Module):
    """bneck-lite (MicroNet): dw 3x3 expand -> ReLU6 -> pw project; no tokens, no bridges."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, groups: int):
        super().__init__()
        shuffle = ChannelShuffle(cin) if groups > 1 else nn.Identity()
        self.depthwise = nn.Sequential(_conv_bn(cin, cin * expansion, 3, stride, groups=cin),
                                       nn.ReLU6(), shuffle)
        self.project = _pointwise(cin * expansion, cout, groups)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(x))
        return x + y if self.residual else y


# --------------------------------------------------------------------------------------------
# Blocks: forward(x, z) -> (x, z)
# --------------------------------------------------------------------------------------------


class MobileFormerBlock(nn.Module):
    """Mobile->Former, Former, Mobile (dynamic ReLU from the updated first token), Former->Mobile."""

    def __init__(self, row: BlockRow, cin: int, cout: int, cfg: MobileFormerConfig):
        super().__init__()
        self.mobile_to_former = MobileToFormer(cin, cfg.token_dim, cfg.bridge_heads, cfg.bridge_gate)
        self.former = Former(cfg.token_dim, cfg.former_heads, cfg.ffn_expansion)
        if row.kind == "down":
            self.mobile = DownsampleBottleneck(cin, cout, row.stride, row.expansion,
                                               row.expansion2, cfg)
        else:
            self.mobile = InvertedBottleneck(cin, cout, row.stride, row.expansion, cfg)
        self.former_to_mobile = FormerToMobile(cout, cfg.token_dim, cfg.bridge_heads)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.former(self.mobile_to_former(x, z))
        x = self.mobile(x, z[:, 0])
        return self.former_to_mobile(x, z), z


class LiteBlock(nn.Module):
    """The bneck-lite row: Mobile only, the tokens pass through unchanged."""

    def __init__(self, row: BlockRow, cin: int, cout: int, cfg: MobileFormerConfig):
        super().__init__()
        self.mobile = LiteBottleneck(cin, cout, row.stride, row.expansion, cfg.groups)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mobile(x), z


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


class MobileFormerEncoder(nn.Module):
    """Stem + Mobile-Former blocks, following the encoder contract of ``edgeseg.models.base``.

    ``forward(x)`` returns the feature maps at strides 4, 8, 16, 32 (the last block of each
    resolution); :meth:`forward_with_tokens` also returns the global tokens ``(N, M, d)``.
    """

    strides = (4, 8, 16, 32)

    def __init__(self, cfg: MobileFormerConfig):
        super().__init__()
        self.config = cfg
        self.tokens = nn.Parameter(torch.randn(cfg.num_tokens, cfg.token_dim))  # Z0, random init
        stem = cfg.channels(cfg.stem_channels)
        self.stem = ConvBNAct(3, stem, 3, stride=2, activation=nn.ReLU6)
        blocks, stride, taps = [], 2, {}
        cin = stem
        for i, row in enumerate(cfg.blocks):
            cout = cfg.channels(row.out)
            block_type = LiteBlock if row.kind == "lite" else MobileFormerBlock
            blocks.append(block_type(row, cin, cout, cfg))
            stride *= row.stride
            taps[stride] = (i, cout)  # the last block at each stride is that stride's feature map
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        missing = [s for s in self.strides if s not in taps]
        if missing:
            raise ConfigError(f"{cfg.name}: no block reaches stride(s) {missing}")
        self._tap_blocks = tuple(taps[s][0] for s in self.strides)
        self.out_channels = [taps[s][1] for s in self.strides]

    def forward_with_tokens(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        # A copy, not an expand() view: views of a parameter made under no_grad confuse
        # torch's module tracker (FlopCounterMode); the copy is only M x d per image.
        z = self.tokens.unsqueeze(0).repeat(x.shape[0], 1, 1)
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x, z = block(x, z)
            if i in self._tap_blocks:
                features.append(x)
        return features, z

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_with_tokens(x)[0]

    def adapter_sites(self) -> list[tuple[str, int]]:
        """``(path, channels)`` of every Mobile residual branch's last layer (``project``): its
        output is added to the block input (or, in stride-2 blocks, to the first half's output)."""
        sites = []
        for i, block in enumerate(self.blocks):
            mobile = block.mobile
            if isinstance(mobile, DownsampleBottleneck) or getattr(mobile, "residual", False):
                sites.append((f"blocks.{i}.mobile.project", _out_channels(mobile.project)))
        return sites


def _out_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# ImageNet classifier (parity with the paper's parameter and MAdd figures)
# --------------------------------------------------------------------------------------------


class MobileFormerClassifier(nn.Module):
    """The paper's ImageNet model: encoder, a last Mobile->Former bridge, 1x1 conv (x6) + ReLU6,
    global pool + hard-swish, concat with the first token, FC -> BN -> hard-swish -> FC."""

    def __init__(self, cfg: MobileFormerConfig, num_classes: int = 1000, dropout: float = 0.0):
        super().__init__()
        self.config = cfg
        self.encoder = MobileFormerEncoder(cfg)
        last = self.encoder.out_channels[-1]
        wide = last * cfg.last_expansion
        self.final_bridge = MobileToFormer(last, cfg.token_dim, cfg.bridge_heads, cfg.bridge_gate)
        expand = _conv_bn(last, wide, 1, groups=cfg.groups)
        shuffle = ChannelShuffle(cfg.groups) if cfg.groups > 1 else nn.Identity()
        self.expand = nn.Sequential(shuffle, expand, nn.ReLU6())
        self.fc = nn.Sequential(
            nn.Linear(wide + cfg.token_dim, cfg.classifier_hidden),
            nn.BatchNorm1d(cfg.classifier_hidden),
            nn.Hardswish(),
            nn.Dropout(dropout),
            nn.Linear(cfg.classifier_hidden, num_classes),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, z = self.encoder.forward_with_tokens(x)
        z = self.final_bridge(features[-1], z)
        pooled = F.hardswish(self.expand(features[-1]).mean(dim=(2, 3)))
        return self.fc(torch.cat([pooled, z[:, 0]], dim=1))


def mobileformer_classifier(variant: str, *, num_classes: int = 1000,
                            dropout: float = 0.0) -> MobileFormerClassifier:
    """The ImageNet classifier of ``variant`` ("26m" ... "508m"), for parity checks."""
    return MobileFormerClassifier(variant_config(variant), num_classes, dropout)


# --------------------------------------------------------------------------------------------
# Segmentation: Mobile-Former encoder + LR-ASPP head
# --------------------------------------------------------------------------------------------


class MobileFormerLRASPP(SegmentationModel):
    """Mobile-Former encoder + LR-ASPP head; logits at input resolution (see base.py)."""

    size_divisor = 32

    def __init__(self, cfg: MobileFormerConfig, metadata: ModelMetadata, inter_channels: int):
        super().__init__()
        self.config = cfg
        self.metadata = metadata
        self.encoder = MobileFormerEncoder(cfg)
        channels = self.encoder.out_channels
        self.decoder = LRASPPHead(channels[1], channels[-1], metadata.num_classes, inter_channels,
                                  low_index=1, gate_bias=True)  # strides 8 and 32
        _init_weights(self)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _build_lraspp(variant: str):
    name = f"mobileformer_lraspp_{variant}"

    def build(
        *,
        num_classes: int | None = None,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        input_size: Sequence[int] | None = None,
        metadata: ModelMetadata | None = None,
        width_mult: float = 1.0,
        token_dim: int | None = None,
        num_tokens: int | None = None,
        inter_channels: int = 128,
    ) -> MobileFormerLRASPP:
        """Mobile-Former-{variant} encoder with an LR-ASPP head (``inter_channels`` wide).
        ``width_mult``, ``token_dim`` and ``num_tokens`` shrink it (tests, tiny devices)."""
        paper = VARIANTS[variant]
        if inter_channels < 1 or (token_dim is not None and token_dim < 1):
            raise ConfigError(
                f"{name}: inter_channels={inter_channels} and token_dim={token_dim} must be >= 1 "
                f"(the paper: 128 head channels, d={paper.token_dim})"
            )
        cfg = replace(
            paper,
            width_mult=width_mult,
            token_dim=paper.token_dim if token_dim is None else token_dim,
            num_tokens=paper.num_tokens if num_tokens is None else num_tokens,
        )
        meta = resolve_metadata(name, num_classes=num_classes, classes=classes, palette=palette,
                                input_size=input_size, metadata=metadata)
        return MobileFormerLRASPP(cfg, meta, inter_channels)

    build.__name__ = name
    build.__doc__ = (build.__doc__ or "").replace("{variant}", variant)
    return build


# Tiny configs for tests (0.05-0.13M params): narrow enough that the widest variants end with
# about 32 channels, 2 tokens of 16 dims, a 16-channel head.
_TINY_WIDTH = {"508m": 0.125, "294m": 0.15, "214m": 0.2}

for _variant in VARIANTS:
    register_model(
        f"mobileformer_lraspp_{_variant}",
        tiny={"width_mult": _TINY_WIDTH.get(_variant, 0.25), "token_dim": 16, "num_tokens": 2,
              "inter_channels": 16},
    )(_build_lraspp(_variant))

