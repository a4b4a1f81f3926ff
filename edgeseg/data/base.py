"""The dataset contract every loader follows: numpy in, numpy out, no torch.

A dataset yields :class:`Sample` objects: an RGB ``uint8`` image (H x W x 3) and a ``uint8``
mask (H x W) already in *train ids* (0..num_classes-1) with :data:`IGNORE_INDEX` for pixels
that must not be trained or scored. Mapping raw label files to train ids is the loader's job, so
training, evaluation and the validation harness never see a dataset's own id scheme.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeseg.metrics import IGNORE_INDEX

Colour = tuple[int, int, int]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image with its mask. ``name`` is unique within the dataset (the file stem)."""

    image: np.ndarray  # H x W x 3, uint8, RGB
    mask: np.ndarray  # H x W, uint8, train ids, IGNORE_INDEX = not labelled
    name: str


@dataclass
class LabelProblem:
    """Mask values outside the class list, found in one file."""

    name: str
    values: tuple[int, ...]


@dataclass
class ValidationReport:
    """What :meth:`SegmentationDataset.validate` found. ``ok`` is True when nothing is wrong."""

    dataset: str
    num_samples: int
    bad_labels: list[LabelProblem] = field(default_factory=list)
    pixels_per_class: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return not self.bad_labels

    def summary(self) -> str:
        if self.ok:
            return f"{self.dataset}: {self.num_samples} samples, all mask values are known classes"
        listed = "; ".join(f"{p.name}: {list(p.values)}" for p in self.bad_labels[:20])
        more = "" if len(self.bad_labels) <= 20 else f" (and {len(self.bad_labels) - 20} more files)"
        return (
            f"{self.dataset}: {len(self.bad_labels)} of {self.num_samples} masks hold values outside "
            f"the class list: {listed}{more}"
        )


class SegmentationDataset:
    """Base class: subclasses set ``name``, ``classes``, ``palette`` and implement the two methods.

    ``ignore_index`` is 255 everywhere in edgeseg (the same value :class:`ConfusionMatrix` skips).
    """

    name: str = "dataset"
    classes: tuple[str, ...] = ()
    palette: tuple[Colour, ...] = ()
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} is out of range for {n} samples")
        return index % n

    def validate(self) -> ValidationReport:
        """Read every mask and report values outside the class list (and pixels per class).

        File-backed loaders override :meth:`_label_problem` to read only the masks; this default
        checks the train-id masks that :meth:`__getitem__` returns.
        """
        counts = np.zeros(self.num_classes, dtype=np.int64)
        report = ValidationReport(self.name, len(self))
        for i in range(len(self)):
            problem, mask = self._label_problem(i)
            if problem is not None:
                report.bad_labels.append(problem)
                continue
            known = mask[mask != self.ignore_index]
            counts += np.bincount(known, minlength=self.num_classes)[: self.num_classes]
        report.pixels_per_class = counts
        return report

    def _label_problem(self, index: int) -> tuple[LabelProblem | None, np.ndarray]:
        sample = self[index]
        mask = sample.mask
        bad = (mask >= self.num_classes) & (mask != self.ignore_index)
        if bad.any():
            return LabelProblem(sample.name, tuple(int(v) for v in np.unique(mask[bad]))), mask
        return None, mask
