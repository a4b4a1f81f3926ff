"""Segmentation losses: plain cross-entropy with an ignore label, and MixLoss for multi-domain
training.

MixLoss (the multi-domain segmentation slides): ``L = sum_n CE(logits_n, labels_n)`` over the
datasets n. Each step every domain's batch goes through the shared encoder and its own head, the
per-domain cross-entropies are summed and back-propagated once, so the shared weights are updated
by all domains together (this reduces the imbalance between domains). Losses are computed here,
never inside a model's ``forward``, so exported graphs hold no loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError, InputShapeError

#: Label value that marks pixels without ground truth (Cityscapes/ADE20K convention).
IGNORE_INDEX = 255


def segmentation_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels of ``logits`` (N, K, H, W) and ``labels``
    (N, H, W) with values in ``0..K-1`` or ``ignore_index``.

    A batch whose pixels are all ``ignore_index`` gives 0 (with a graph, so ``backward`` still
    works) instead of the NaN that ``F.cross_entropy`` returns for an empty mean.
    """
    check_labels(logits, labels, ignore_index=ignore_index)
    labelled = labels != ignore_index
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels.long(), ignore_index=ignore_index)


def check_labels(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int) -> None:
    """Refuse labels that do not fit the logits, saying what to fix (torch's own errors are a
    bare 'Target 7 is out of bounds' on CPU and a device assert on CUDA)."""
    if logits.dim() != 4:
        raise InputShapeError(
            f"logits must be (N, classes, H, W), got shape {tuple(logits.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InputShapeError(
            f"labels must be an integer class-id tensor, got dtype {labels.dtype}; "
            "convert masks with labels.long()"
        )
    n, k, h, w = logits.shape
    if tuple(labels.shape) != (n, h, w):
        raise InputShapeError(
            f"labels of shape {tuple(labels.shape)} do not match logits {tuple(logits.shape)}; "
            f"expected ({n}, {h}, {w}). Models return logits at input resolution: feed labels of "
            "the same crop size (N, H, W), without a channel dimension"
        )
    out_of_range = (labels != ignore_index) & ((labels < 0) | (labels >= k))
    if bool(out_of_range.any()):
        bad = sorted({int(v) for v in labels[out_of_range].unique()[:10]})
        raise ConfigError(
            f"labels hold values {bad} outside the {k} classes 0..{k - 1} (ignore label "
            f"{ignore_index}); map them to train ids or to {ignore_index} before training"
        )


class MixLossResult(NamedTuple):
    """``total``: the summed loss to back-propagate; ``per_domain``: each domain's detached CE,
    keyed by domain name (or by position for a list of pairs), for logging."""

    total: torch.Tensor
    per_domain: dict[str | int, torch.Tensor]


class MixLoss(nn.Module):
    """``L = sum over domains of CE(logits_d, labels_d)`` with ``ignore_index`` (255).

    Call it with ``{domain: (logits, labels)}`` or a list of ``(logits, labels)`` pairs::

        logits = model.forward_all(images)          # or one forward per domain's batch
        total, per_domain = MixLoss()({"city": (logits_city, y_city), "bdd": (logits_bdd, y_bdd)})
        total.backward()                            # one backward: every domain updates the encoder
    """

    def __init__(self, *, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(
        self,
        batches: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
        | Iterable[tuple[torch.Tensor, torch.Tensor]],
    ) -> MixLossResult:
        pairs = list(batches.items() if isinstance(batches, Mapping) else enumerate(batches))
        if not pairs:
            raise ConfigError("MixLoss got no domains; give {domain: (logits, labels)} for each")
        per_domain: dict[str | int, torch.Tensor] = {}
        total = None
        for key, pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(
                    f"MixLoss entry {key!r} must be a (logits, labels) pair, got {type(pair).__name__}"
                )
            loss = segmentation_cross_entropy(*pair, ignore_index=self.ignore_index)
            per_domain[key] = loss.detach()
            total = loss if total is None else total + loss
        return MixLossResult(total, per_domain)
