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


@dataclass(frozen=True)
class Gates:
    """What a converted file must keep relative to the PyTorch reference on the same images."""

    # Largest allowed mIoU loss in percentage points (reference mIoU - file mIoU). 0.5 points is
    # the usual "int8 is lossless" claim in the mobile segmentation papers.
    max_miou_drop: float = 0.5
    # Smallest allowed fraction of pixels whose argmax class equals the reference's.
    min_agreement: float = 0.999
    # Also fail when any single class loses more than max_miou_drop points of IoU.
    per_class_gate: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_miou_drop) or self.max_miou_drop < 0:
            raise ValidationSetupError(
                f"max_miou_drop={self.max_miou_drop} must be a finite number of mIoU points >= 0 "
                "(for example 0.5)"
            )
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValidationSetupError(
                f"min_agreement={self.min_agreement} is a fraction of pixels: give a value in [0, 1] "
                "(for example 0.999)"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    def failures(self, miou_drop: float, agreement: float, class_deltas: dict[str, float | None]) -> list[str]:
        """Human-readable reasons the gates fail ([] = within the gates). Deltas are in points."""
        reasons = []
        if not math.isfinite(miou_drop) or miou_drop > self.max_miou_drop:
            reasons.append(f"mIoU drops {miou_drop:.2f} points (gate {self.max_miou_drop:g})")
        if not agreement >= self.min_agreement:
            reasons.append(
                f"agrees with the reference on {agreement:.4%} of pixels (gate {self.min_agreement:.4%})"
            )
        if self.per_class_gate:
            for name, delta in class_deltas.items():
                if delta is not None and -delta > self.max_miou_drop:
                    reasons.append(f"class {name!r} IoU drops {-delta:.2f} points (gate {self.max_miou_drop:g})")
        return reasons
