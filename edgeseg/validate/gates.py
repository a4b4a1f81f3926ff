"""Pass/fail gates and the status of each validated file.

A file passes only if it loaded, ran here, and every scored domain stays within the gates.
CoreML off macOS is "cannot run here": never passed, never silently skipped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgeseg.validate.errors import ValidationSetupError

PASSED = "passed"
FAILED_VALIDATION = "converted but failed validation"
FAILED_TO_LOAD = "failed to load"
CANNOT_RUN_HERE = "cannot run here"
STATUSES = (PASSED, FAILED_VALIDATION, FAILED_TO_LOAD, CANNOT_RUN_HERE)


# Default pixel-agreement gate per precision of the file. fp32 must match PyTorch; fp16 may flip
# near-ties (the converters' own fp16 check); int8 moves logits by quantization steps, so its
# agreement only catches a broken file (the default of edgeseg.quantization's gate, which already
# admitted it) and the mIoU-drop gate judges its accuracy. Files of unknown precision get fp32's.
# bf16: an OpenVINO file computed at bf16 (seg.precision), held to the 16-bit float gate as fp16 is.
DEFAULT_AGREEMENT = {"fp32": 0.999, "fp16": 0.995, "bf16": 0.995, "int8": 0.90}


@dataclass(frozen=True)
class Gates:
    """What a converted file must keep relative to the PyTorch reference on the same images."""

    # Largest allowed mIoU loss in percentage points (reference mIoU - file mIoU). 0.5 points is
    # the usual "int8 is lossless" claim in the mobile segmentation papers.
    max_miou_drop: float = 0.5
    # Smallest allowed fraction of pixels whose argmax class equals the reference's; None = the
    # default for each file's precision (DEFAULT_AGREEMENT).
    min_agreement: float | None = None
    # Also fail when any single class loses more than max_miou_drop points of IoU.
    per_class_gate: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_miou_drop) or self.max_miou_drop < 0:
            raise ValidationSetupError(
                f"max_miou_drop={self.max_miou_drop} must be a finite number of mIoU points >= 0 "
                "(for example 0.5)"
            )
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise ValidationSetupError(
                f"min_agreement={self.min_agreement} is a fraction of pixels: give a value in [0, 1] "
                "(for example 0.999)"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    def agreement_for(self, precision: str | None) -> float:
        """The agreement gate of a file of this precision."""
        if self.min_agreement is not None:
            return self.min_agreement
        stored = (precision or "").split("+")[0]  # "int8+bf16": an int8 file's gate
        return DEFAULT_AGREEMENT.get(precision or "", DEFAULT_AGREEMENT.get(stored, DEFAULT_AGREEMENT["fp32"]))

    def describe(self) -> str:
        """The gates in words, for reports."""
        if self.min_agreement is not None:
            agreement = f"{self.min_agreement:.4%}"
        else:
            agreement = ", ".join(f"{v:.1%} ({p})" for p, v in DEFAULT_AGREEMENT.items())
        return (
            f"mIoU drop <= {self.max_miou_drop:g} points{' (also per class)' if self.per_class_gate else ''}, "
            f"pixel agreement with the reference >= {agreement}"
        )

    def failures(
        self, miou_drop: float, agreement: float, class_deltas: dict[str, float | None],
        precision: str | None = None,
    ) -> list[str]:
        """Human-readable reasons the gates fail ([] = within the gates). Deltas are in points."""
        reasons = []
        if not math.isfinite(miou_drop) or miou_drop > self.max_miou_drop:
            reasons.append(f"mIoU drops {miou_drop:.2f} points (gate {self.max_miou_drop:g})")
        least = self.agreement_for(precision)
        if not agreement >= least:
            reasons.append(
                f"agrees with the reference on {agreement:.4%} of pixels (gate {least:.4%}"
                + (f" for {precision} files)" if self.min_agreement is None else ")")
            )
        if self.per_class_gate:
            for name, delta in class_deltas.items():
                if delta is not None and -delta > self.max_miou_drop:
                    reasons.append(f"class {name!r} IoU drops {-delta:.2f} points (gate {self.max_miou_drop:g})")
        return reasons
