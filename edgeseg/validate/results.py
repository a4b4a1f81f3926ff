"""What a validation run found, as plain dataclasses that serialize to the report's JSON.

IoU, accuracy and agreement are fractions in [0, 1]; deltas and drops are percentage points
(the unit the gates use), so 0.5 means half a point of mIoU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgeseg.metrics import SegmentationScores
from edgeseg.validate.gates import PASSED, Gates


def _number(value: float | None) -> float | None:
    """JSON has no NaN: a class never seen (or a value never measured) is null."""
    return None if value is None or not math.isfinite(value) else float(value)


def scores_dict(scores: SegmentationScores) -> dict:
    return {
        "miou": _number(scores.miou),
        "pixel_accuracy": _number(scores.pixel_accuracy),
        "mean_accuracy": _number(scores.mean_accuracy),
        "per_class_iou": {n: _number(v) for n, v in zip(scores.classes, scores.per_class_iou)},
    }


@dataclass
class Sample:
    """One image kept for the report's overlays: its labels, the reference mask and each file's."""

    name: str
    image: np.ndarray
    label: np.ndarray
    reference: np.ndarray | None
    palette: np.ndarray
    files: dict[str, np.ndarray] = field(default_factory=dict)  # file name -> mask


@dataclass
class DomainResult:
    """One file scored on one domain's images, beside the reference on the same images."""

    domain: str | None
    data: str  # the --data spec that supplied the images
    images: int
    scores: SegmentationScores
    reference: SegmentationScores | None
    agreement: float | None  # fraction of pixels whose class equals the reference's
    max_logit_error: float | None  # max |logit - reference logit|; None when the file has no logits
    mean_logit_error: float | None
    gate_failures: list[str] = field(default_factory=list)

    @property
    def miou_drop(self) -> float | None:
        """Reference mIoU minus file mIoU, in points (positive = the file is worse)."""
        if self.reference is None:
            return None
        return 100.0 * (self.reference.miou - self.scores.miou)

    @property
    def class_deltas(self) -> dict[str, float | None]:
        """File IoU minus reference IoU per class, in points (None where a class is never seen)."""
        if self.reference is None:
            return {n: None for n in self.scores.classes}
        deltas = 100.0 * (self.scores.per_class_iou - self.reference.per_class_iou)
        return {n: _number(d) for n, d in zip(self.scores.classes, deltas)}

    def to_dict(self) -> dict:
        return {
            "domain": self.domain,
            "data": self.data,
            "images": self.images,
            "scores": scores_dict(self.scores),
            "reference": scores_dict(self.reference) if self.reference else None,
            "miou_drop_points": _number(self.miou_drop),
            "per_class_iou_delta_points": self.class_deltas,
            "agreement": _number(self.agreement),
            "max_logit_error": _number(self.max_logit_error),
            "mean_logit_error": _number(self.mean_logit_error),
            "gate_failures": list(self.gate_failures),
        }


@dataclass
class FileResult:
    """One model file: how it loaded, its size, and its scores per domain."""

    path: str
    backend: str | None  # runtime backend that ran it (None if it never loaded)
    precision: str | None
    size_bytes: int
    status: str
    reason: str = ""  # why it failed, or why it cannot run here
    domains: list[DomainResult] = field(default_factory=list)
    device: str | None = None  # what ran the graph (seg.device), and what auto picked / left to the CPU
    device_note: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "status": self.status,
            "reason": self.reason,
            "device": self.device,
            "device_note": self.device_note,
            "domains": [d.to_dict() for d in self.domains],
        }


@dataclass
class ValidationRun:
    """Everything ``validate`` measured: the reference per domain, every file, the gates."""

    reference_path: str | None  # None: scored against the labels only, no gate
    data: list[str]
    limit: int | None
    gates: Gates
    reference: dict[str | None, DomainResult]  # domain -> the reference scored alone
    files: list[FileResult]
    samples: dict[str | None, list[Sample]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True only if every file passed: a file that cannot run here is not a pass."""
        return all(f.passed for f in self.files)

    @property
    def verdict(self) -> str:
        """The report heading's verdict. Files that cannot run here are neither passed nor failed:
        the heading names them instead of saying NOT PASSED when nothing that ran failed."""
        from edgeseg.validate.gates import CANNOT_RUN_HERE

        if self.passed:
            return "PASSED"
        if self.failed:
            return "NOT PASSED"
        from edgeseg.runtime.formats import by_suffix

        names = [f.name for f in self.files if f.status == CANNOT_RUN_HERE]
        kinds = {by_suffix(name[name.rfind("."):]) if "." in name else None for name in names}
        fmt = kinds.pop() if len(kinds) == 1 else None
        why = f"{fmt.title} runs on {fmt.where()} only" if fmt is not None and fmt.runs_on else "see their rows"
        ran = "every file that ran passed" if len(names) < len(self.files) else "no file ran"
        return f"not run here: {', '.join(names)} ({why}); {ran}"

    @property
    def failed(self) -> list[FileResult]:
        """Files that loaded badly or broke a gate (not those that cannot run here)."""
        from edgeseg.validate.gates import CANNOT_RUN_HERE

        return [f for f in self.files if f.status not in (PASSED, CANNOT_RUN_HERE)]

    def to_dict(self) -> dict:
        return {
            "reference": self.reference_path,
            "data": list(self.data),
            "limit": self.limit,
            "gates": self.gates.as_dict(),
            "reference_scores": [
                {"domain": d.domain, "data": d.data, "images": d.images, "scores": scores_dict(d.scores)}
                for d in self.reference.values()
            ],
            "files": [f.to_dict() for f in self.files],
            "passed": self.passed,
        }
