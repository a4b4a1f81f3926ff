"""Segmentation metrics from a confusion matrix: one implementation for training and validation.

Torch-free (numpy only) so the validation harness can score converted files on a device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass
class SegmentationScores:
    """mIoU and friends. IoU values are fractions in [0, 1]; NaN marks a class never seen."""

    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    per_class_iou: np.ndarray
    classes: tuple[str, ...] | None = None

    def as_dict(self) -> dict:
        names = self.classes or tuple(str(i) for i in range(len(self.per_class_iou)))
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "mean_accuracy": self.mean_accuracy,
            "per_class_iou": {
                n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.per_class_iou)
            },
        }


class ConfusionMatrix:
    """Accumulates ``matrix[true, pred]`` pixel counts over any number of batches.

    Labels equal to ``ignore_index`` are skipped. Labels outside ``[0, num_classes)`` that are not
    the ignore index raise, so a wrong label mapping is reported instead of silently scored.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {pred.shape} differs from label shape {target.shape}; resize "
                "the prediction to the label's size (nearest) before scoring"
            )
        target = target.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        keep = target != self.ignore_index
        target, pred = target[keep], pred[keep]
        bad = (target < 0) | (target >= self.num_classes)
        if bad.any():
            values = np.unique(target[bad])[:10].tolist()
            raise ValueError(
                f"labels {values} are outside 0..{self.num_classes - 1} and are not the ignore "
                f"index {self.ignore_index}; check the dataset's label mapping"
            )
        if ((pred < 0) | (pred >= self.num_classes)).any():
            raise ValueError(f"predictions outside 0..{self.num_classes - 1}")
        self.matrix += np.bincount(
            target * self.num_classes + pred, minlength=self.num_classes**2
        ).reshape(self.num_classes, self.num_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def reset(self) -> None:
        self.matrix[:] = 0

    def scores(self, classes: tuple[str, ...] | None = None) -> SegmentationScores:
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt = m.sum(axis=1)
        pr = m.sum(axis=0)
        union = gt + pr - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(gt > 0, tp / union, np.nan)  # classes absent from the labels: NaN
            acc = np.where(gt > 0, tp / gt, np.nan)
        total = m.sum()
        return SegmentationScores(
            miou=float(np.nanmean(iou)) if np.any(gt > 0) else float("nan"),
            pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
            mean_accuracy=float(np.nanmean(acc)) if np.any(gt > 0) else float("nan"),
            per_class_iou=iou,
            classes=classes,
        )


def miou(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> float:
    """mIoU of one prediction against its labels (a convenience over :class:`ConfusionMatrix`)."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    cm.update(pred, target)
    return cm.scores().miou
