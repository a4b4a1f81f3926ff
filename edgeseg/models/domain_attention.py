"""Domain Attention (DA): Wang et al., "Towards Universal Object Detection by Domain Attention"
(CVPR 2019), the domain-attention module of the domain-attentive universal detector.

A DA module re-weights the channels of a residual branch's output before the residual add:

* an **SE adapter bank** of N Squeeze-and-Excitation adapters; adapter i maps the globally
  pooled features ``p`` (C values) to channel scores ``FC(ReLU(FC(p)))`` (C values). Stacked,
  the bank gives a C x N matrix (``S_UA`` in the paper);
* a **domain-assignment** branch ``softmax(FC(p))`` gives N weights that sum to 1 (``D``);
* the channel attention is ``sigmoid(S_UA @ D)`` (C x 1), multiplied into the features.

The sigmoid comes after the mix (the adapters themselves have none), as in the paper and the
authors' released code. The assignment is computed from the input itself, so
no domain label is needed at inference. Works on ``(N, C, H, W)`` maps (pooled over H, W) and on
``(N, L, C)`` token sequences (pooled over L), for CNN and Transformer encoders alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError, InputShapeError


def adapter_hidden_channels(channels: int, reduction: int) -> int:
    """Width of an SE adapter's bottleneck: ``channels // reduction`` (the SE paper's rule), but
    at least 8 (or ``channels`` when smaller) so narrow layers keep a usable bottleneck."""
    return max(min(8, channels), channels // reduction)


class SEAdapter(nn.Module):
    """One adapter of the bank: pooled features (N, C) -> FC -> ReLU -> FC -> channel scores
    (N, C). No sigmoid here: DA applies it once, after mixing the adapters."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Linear(channels, hidden)
        self.expand = nn.Linear(hidden, channels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.expand(F.relu(self.reduce(pooled)))


class DomainAttention(nn.Module):
    """A bank of ``num_adapters`` SE adapters mixed by a softmax domain assignment.

    Args:
        channels: channels C of the features it re-weights.
        num_adapters: N, the adapters in the bank (the paper uses about one per domain).
        reduction: SE bottleneck ratio r: each adapter is C -> C/r -> C (16 in the paper).
    """

    def __init__(self, channels: int, *, num_adapters: int, reduction: int = 16) -> None:
        super().__init__()
        if channels < 1 or num_adapters < 1 or reduction < 1:
            raise ConfigError(
                f"DomainAttention needs channels, num_adapters and reduction >= 1, got "
                f"channels={channels}, num_adapters={num_adapters}, reduction={reduction}"
            )
        self.channels = channels
        hidden = adapter_hidden_channels(channels, reduction)
        self.adapters = nn.ModuleList(SEAdapter(channels, hidden) for _ in range(num_adapters))
        self.assignment = nn.Linear(channels, num_adapters)

    @property
    def num_adapters(self) -> int:
        return len(self.adapters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x)
        attention = self.channel_attention(pooled)
        if x.dim() == 4:
            return x * attention[:, :, None, None]
        return x * attention[:, None, :]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool to (N, C): over H, W of a map, over L of a token sequence."""
        if x.dim() == 4:
            channels, pooled = x.shape[1], x.mean(dim=(2, 3))
        elif x.dim() == 3:
            channels, pooled = x.shape[2], x.mean(dim=1)
        else:
            raise InputShapeError(
                f"DomainAttention takes (N, C, H, W) feature maps or (N, L, C) tokens, got a "
                f"{x.dim()}-D tensor of shape {tuple(x.shape)}"
            )
        if channels != self.channels:
            raise InputShapeError(
                f"DomainAttention was built for {self.channels} channels but got {channels} "
                f"(shape {tuple(x.shape)}); build it with the channels of the branch it follows"
            )
        return pooled

    def assignment_weights(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, num_adapters) softmax weights: how much each adapter speaks for this input."""
        return torch.softmax(self.assignment(pooled), dim=-1)

    def channel_attention(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, C) attention in (0, 1): sigmoid of the bank (N, C, A) times the weights (N, A, 1)."""
        bank = torch.stack([adapter(pooled) for adapter in self.adapters], dim=-1)
        mixed = torch.matmul(bank, self.assignment_weights(pooled).unsqueeze(-1)).squeeze(-1)
        return torch.sigmoid(mixed)


class DomainAttentionSite(nn.Sequential):
    """``Sequential(branch, DomainAttention)`` that also passes extra positional inputs (such as a
    Transformer block's H, W) to the branch, so any adapter site can be wrapped. Its state-dict
    keys are those of a plain Sequential: ``<site>.0.*`` (the branch) and ``<site>.1.*`` (DA)."""

    def __init__(self, branch: nn.Module, attention: DomainAttention) -> None:
        super().__init__(branch, attention)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self[1](self[0](*inputs))


def insert_domain_attention(encoder: nn.Module, *, num_adapters: int, reduction: int) -> int:
    """Wrap every ``encoder.adapter_sites()`` branch as ``DomainAttentionSite(branch, DA)``, in
    place, and return how many were wrapped.

    Inner sites are wrapped before outer ones, so a site nested in another keeps its path valid.
    """
    sites = list(encoder.adapter_sites())
    if not sites:
        raise ConfigError(
            f"{type(encoder).__name__}.adapter_sites() lists no residual branches, so there is "
            "nowhere to put Domain Attention; build with with_domain_attention=False"
        )
    for path, channels in sorted(sites, key=lambda site: site[0].count("."), reverse=True):
        branch = encoder.get_submodule(path)
        if isinstance(branch, DomainAttentionSite):
            raise ConfigError(f"adapter site {path!r} already has Domain Attention")
        attention = DomainAttention(channels, num_adapters=num_adapters, reduction=reduction)
        encoder.set_submodule(path, DomainAttentionSite(branch, attention))
    return len(sites)
