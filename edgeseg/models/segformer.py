"""SegFormer (Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021): the Mix Transformer (MiT) encoder and the All-MLP decoder.

Order: config, encoder parts (patch embedding, efficient self-attention, Mix-FFN, block, stage,
encoder), decoder, model, builder. Weights of Hugging Face ``transformers`` SegFormer checkpoints
load through :mod:`edgeseg.models.hf_segformer` (the key mapping is documented there).

Export notes: every reshape takes its sizes from the traced input's concrete shape (no -1 on a
data-dependent dimension), every resize is ``F.interpolate`` with an explicit ``size``, and the
attention is written as matmul -> softmax -> matmul (no fused SDPA op) so ONNX, LiteRT, OpenVINO
and CoreML see plain ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.metadata import ModelMetadata
from edgeseg.models.base import SegmentationModel, resolve_metadata
from edgeseg.models.registry import register_model


_PER_STAGE_FIELDS = (
    "patch_sizes", "strides", "hidden_sizes", "depths", "num_heads", "sr_ratios", "mlp_ratios"
)


@dataclass(frozen=True)
class SegFormerConfig:
    """MiT encoder + All-MLP decoder. Defaults are SegFormer-B0: the paper's appendix Table 6
    ("Detailed settings of MiT series") for the encoder, Table 1 and Sec. 4.2 for the decoder
    width C. Per-stage tuples have one entry per encoder stage (4 in every MiT variant)."""

    # K_i: kernel of the overlapping patch embedding of stage i (Table 6: 7 then 3, 3, 3).
    patch_sizes: tuple[int, ...] = (7, 3, 3, 3)
    # S_i: its stride (Table 6: 4, 2, 2, 2), so stage outputs are at 1/4, 1/8, 1/16, 1/32.
    strides: tuple[int, ...] = (4, 2, 2, 2)
    # C_i: channels of stage i (Table 6, MiT-B0: 32, 64, 160, 256).
    hidden_sizes: tuple[int, ...] = (32, 64, 160, 256)
    # L_i: transformer blocks in stage i (Table 6, MiT-B0: 2, 2, 2, 2).
    depths: tuple[int, ...] = (2, 2, 2, 2)
    # N_i: attention heads of stage i (Table 6: 1, 2, 5, 8; head width C_i/N_i = 32 in B0).
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    # R_i: spatial-reduction ratio of keys/values in efficient self-attention (Table 6: 8, 4, 2, 1).
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    # E_i: Mix-FFN expansion ratio (Table 6: 4 in every stage); the FFN's 3x3 depthwise conv
    # (Eq. 3) replaces positional encodings.
    mlp_ratios: tuple[int, ...] = (4, 4, 4, 4)
    # C: width of the All-MLP decoder (Table 1b / Sec. 4.2: 256 for the real-time B0 and B1,
    # 768 for B2-B5).
    decoder_channels: int = 256
    # Every LayerNorm's eps. Hugging Face builds all of them with torch's default 1e-5 (its
    # config's layer_norm_eps=1e-6 is unused); we match HF so its checkpoints give equal logits.
    layer_norm_eps: float = 1e-5
    # Stochastic depth, rising linearly to this rate over the blocks (training only: identity in
    # eval and in exported graphs). 0.1 is the paper's / HF's training setting.
    drop_path_rate: float = 0.1
    # Dropout before the classifier (training only), as HF's classifier_dropout_prob.
    classifier_dropout: float = 0.1

    def __post_init__(self) -> None:
        per_stage = _PER_STAGE_FIELDS
        for name in per_stage:  # JSON build configs give lists; keep the config hashable
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        lengths = {name: len(getattr(self, name)) for name in per_stage}
        if len(set(lengths.values())) != 1 or not self.hidden_sizes:
            raise ConfigError(
                f"SegFormer per-stage settings must all have one entry per stage, got lengths {lengths}"
            )
        for c, h, i in zip(self.hidden_sizes, self.num_heads, range(self.num_stages)):
            if h < 1 or c % h:
                raise ConfigError(
                    f"stage {i}: hidden size {c} is not divisible by {h} heads; pick heads that divide it"
                )
        too_small = [name for name in per_stage if min(getattr(self, name)) < 1]
        if too_small:
            raise ConfigError(f"SegFormer {too_small} must be >= 1 in every stage: {self}")
        if self.decoder_channels < 1:
            raise ConfigError(f"decoder_channels must be >= 1, got {self.decoder_channels}")

    @property
    def num_stages(self) -> int:
        return len(self.hidden_sizes)

    @property
    def output_strides(self) -> tuple[int, ...]:
        out, total = [], 1
        for s in self.strides:
            total *= s
            out.append(total)
        return tuple(out)


# --- encoder: Mix Transformer ---------------------------------------------------------------------


def tokens_to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) map, with the static sizes of the traced input."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding/merging (Sec. 3.1): a strided conv with padding K//2, so
    neighbouring patches share pixels, then LayerNorm over the tokens."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, stride: int, eps: float):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a sequence shortened R^2 times by a
    stride-R conv (Eq. 2), so stage 1 (1/4 resolution) stays affordable."""

    def __init__(self, channels: int, num_heads: int, sr_ratio: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.scale = self.head_dim**-0.5
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:  # R = 1 (last stage) attends over every token: no reduction layers
            self.reduce = nn.Conv2d(channels, channels, sr_ratio, sr_ratio)
            self.reduce_norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        kv = tokens
        if self.sr_ratio > 1:
            kv = self.reduce(tokens_to_map(tokens, height, width)).flatten(2).transpose(1, 2)
            kv = self.reduce_norm(kv)
        q = self.split_heads(self.query(tokens))
        k, v = self.split_heads(self.key(kv)), self.split_heads(self.value(kv))
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        batch, length, channels = tokens.shape
        return self.out((attn @ v).transpose(1, 2).reshape(batch, length, channels))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)


class MixFFN(nn.Module):
    """Mix-FFN (Eq. 3): fc1 -> 3x3 depthwise conv -> GELU -> fc2. The depthwise conv leaks
    position information, replacing positional encodings, so any input size works."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        hidden = channels * ratio
        self.fc1 = nn.Linear(channels, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as the paper and HF
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.dwconv(tokens_to_map(self.fc1(tokens), height, width))
        return self.fc2(self.act(x.flatten(2).transpose(1, 2)))


class DropPath(nn.Module):
    """Stochastic depth per sample on a residual branch; identity in eval (and in exports)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + attention(LN(x)), then x + MixFFN(LN(x)).

    Multi-domain models re-weight the Mix-FFN branch output at ``mix_ffn.fc2`` (see
    :meth:`MixTransformer.adapter_sites`)."""

    def __init__(
        self, channels: int, num_heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float, eps: float
    ):
        super().__init__()
        self.attn_norm = nn.LayerNorm(channels, eps=eps)
        self.attention = EfficientSelfAttention(channels, num_heads, sr_ratio, eps)
        self.ffn_norm = nn.LayerNorm(channels, eps=eps)
        self.mix_ffn = MixFFN(channels, mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        tokens = tokens + self.drop_path(self.attention(self.attn_norm(tokens), height, width))
        return tokens + self.drop_path(self.mix_ffn(self.ffn_norm(tokens), height, width))


class MiTStage(nn.Module):
    """Patch embedding (downsampling) -> transformer blocks -> LayerNorm -> (B, C, H, W) map."""

    def __init__(self, config: SegFormerConfig, index: int, in_channels: int, drop_paths: Sequence[float]):
        super().__init__()
        channels, eps = config.hidden_sizes[index], config.layer_norm_eps
        self.patch_embed = OverlapPatchEmbed(
            in_channels, channels, config.patch_sizes[index], config.strides[index], eps
        )
        self.blocks = nn.ModuleList(
            MiTBlock(
                channels, config.num_heads[index], config.sr_ratios[index], config.mlp_ratios[index], rate, eps
            )
            for rate in drop_paths
        )
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, height, width = self.patch_embed(x)
        for block in self.blocks:
            tokens = block(tokens, height, width)
        return tokens_to_map(self.norm(tokens), height, width)


class MixTransformer(nn.Module):
    """The MiT encoder. Follows the encoder contract of :mod:`edgeseg.models.base`:
    ``forward(x)`` returns the four stage maps ``(N, C_i, H/s_i, W/s_i)`` for ``s_i`` in
    ``strides`` (4, 8, 16, 32 with the paper's strides), ``out_channels`` = ``hidden_sizes``."""

    def __init__(self, config: SegFormerConfig, in_channels: int = 3):
        super().__init__()
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear decay rule
        stages, start = [], 0
        for i, depth in enumerate(config.depths):
            stages.append(MiTStage(config, i, in_channels, rates[start : start + depth]))
            in_channels, start = config.hidden_sizes[i], start + depth
        self.stages = nn.ModuleList(stages)
        self.out_channels = list(config.hidden_sizes)
        self.strides = list(config.output_strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def adapter_sites(self) -> list[tuple[str, int]]:
        """One site per transformer block: the Mix-FFN's last linear layer, whose output is the
        block's FFN residual branch, as (B, N, C) tokens, just before the residual add (the
        slides put one DA module in each block). ``attention.out`` would be the other branch."""
        return [
            (f"stages.{i}.blocks.{j}.mix_ffn.fc2", channels)
            for i, (stage, channels) in enumerate(zip(self.stages, self.out_channels))
            for j in range(len(stage.blocks))
        ]


# --- decoder: All-MLP -----------------------------------------------------------------------------


class AllMLPDecoder(nn.Module):
    """All-MLP decoder (Sec. 3.2, Eq. 4): per stage Linear(C_i, C) -> upsample to 1/4 -> concat ->
    Linear(4C, C) -> Linear(C, N_cls).

    The per-pixel Linear layers are 1x1 convs on (N, C, H, W) maps (same weights, no token
    transposes in the exported graph). The fusion layer is 1x1 conv + BatchNorm + ReLU, as in the
    official code and HF. Stages are concatenated deepest first, the official (and HF) order.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Conv2d(channels * len(in_channels), channels, 1, bias=False)
        self.fuse_norm = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        maps = [
            F.interpolate(proj(f), size=size, mode="bilinear", align_corners=False)
            for proj, f in zip(self.projections, features)
        ]
        x = F.relu(self.fuse_norm(self.fuse(torch.cat(maps[::-1], dim=1))))
        return self.classifier(self.dropout(x))


# --- model ----------------------------------------------------------------------------------------


class SegFormer(SegmentationModel):
    """MiT encoder + All-MLP decoder; logits at 1/4 resolution, upsampled by the base forward."""

    size_divisor = 32
    # Measured: export vs eager max |diff| is 0 on the tiny and B0 configs (same kernels, same
    # order); 1e-5 leaves room for kernel choice on other CPUs.
    export_atol = 1e-5

    def __init__(self, config: SegFormerConfig, metadata: ModelMetadata):
        super().__init__()
        self.config = config
        self.metadata = metadata
        self.encoder = MixTransformer(config)
        self.decoder = AllMLPDecoder(
            config.hidden_sizes, config.decoder_channels, metadata.num_classes, config.classifier_dropout
        )
        self.size_divisor = max(32, config.output_strides[-1])
        self.apply(_init_weights)


def _init_weights(module: nn.Module) -> None:
    # The official MiT init: truncated normal for linear layers, fan-out normal for convs.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, std=(2.0 / fan_out) ** 0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_segformer(
    config: SegFormerConfig,
    *,
    name: str,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    input_size: Sequence[int] | None = None,
    metadata: ModelMetadata | None = None,
) -> SegFormer:
    """A SegFormer with ``config``; classes come from ``metadata``, ``classes`` or ``num_classes``."""
    return SegFormer(config, resolve_metadata(name, num_classes=num_classes, classes=classes, palette=palette,
                                              input_size=input_size, metadata=metadata))


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(SegFormerConfig))


@register_model(
    "segformer_b0",
    # HF's test config: hidden sizes 8/8/16/16, one block per stage, heads 1/1/2/2.
    tiny={
        "hidden_sizes": [8, 8, 16, 16],
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 1, 2, 2],
        "decoder_channels": 16,
    },
)
def segformer_b0(
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    input_size: Sequence[int] | None = None,
    metadata: ModelMetadata | None = None,
    **config_overrides: Any,
) -> SegFormer:
    """SegFormer-B0 (3.8M parameters with 150 classes). ``config_overrides`` replace fields of
    :class:`SegFormerConfig` (e.g. ``hidden_sizes=[8, 8, 16, 16]`` for a tiny test model)."""
    unknown = sorted(set(config_overrides) - set(_CONFIG_FIELDS))
    if unknown:
        raise ConfigError(
            f"segformer_b0: unknown option(s) {unknown}; SegFormerConfig fields are {list(_CONFIG_FIELDS)}"
        )
    config = SegFormerConfig(**config_overrides)
    return build_segformer(config, name="segformer_b0", num_classes=num_classes, classes=classes,
                           palette=palette, input_size=input_size, metadata=metadata)


__all__ = [
    "AllMLPDecoder",
    "MixTransformer",
    "SegFormer",
    "SegFormerConfig",
    "build_segformer",
    "segformer_b0",
]
