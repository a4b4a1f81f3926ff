"""Datasets backed by image/mask files: pairing, reading, and mapping raw ids to train ids.

Every real layout (Cityscapes, BDD100K, Mapillary Vistas, ADE20K, folder) is a list of
(image, mask) file pairs plus a :class:`LabelMapping`; only the folder names and the table differ.

Bad-label policy (``on_bad_labels``):
    ``"error"`` (default): a mask value that is neither a known raw id nor the ignore value raises
    :class:`DatasetLabelError` naming the file and the values, when that sample is loaded.
    ``"ignore"``: such pixels become 255 (not trained, not scored) and a warning names the file.
:meth:`SegmentationDataset.validate` scans every mask up front and lists all offending files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.data.base import Colour, LabelProblem, Sample, SegmentationDataset
from edgeseg.data.errors import DatasetLabelError, DatasetLayoutError, DatasetSpecError
from edgeseg.metrics import IGNORE_INDEX

BAD_LABEL_POLICIES = ("error", "ignore")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_INVALID = -1  # a raw value no table entry names: reported, never trained on


@dataclass(frozen=True)
class LabelMapping:
    """A 256-entry table from raw mask values to train ids (255 = ignore, -1 = invalid)."""

    table: np.ndarray  # int16, shape (256,)

    @classmethod
    def from_dict(cls, raw_to_train: dict[int, int]) -> LabelMapping:
        table = np.full(256, _INVALID, dtype=np.int16)
        for raw, train in raw_to_train.items():
            table[raw] = train
        return cls(table)

    @classmethod
    def identity(cls, num_classes: int) -> LabelMapping:
        """Masks already in train ids: 0..num_classes-1 kept, 255 kept as ignore."""
        return cls.from_dict({**{i: i for i in range(num_classes)}, IGNORE_INDEX: IGNORE_INDEX})

    def apply(self, raw: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Train-id mask and the raw values that were invalid (empty tuple if none)."""
        mapped = self.table[raw]
        bad = mapped == _INVALID
        if bad.any():
            values = tuple(int(v) for v in np.unique(raw[bad]))
            mapped = np.where(bad, IGNORE_INDEX, mapped)
            return mapped.astype(np.uint8), values
        return mapped.astype(np.uint8), ()


def require_dir(path: Path, layout: str) -> Path:
    """``path`` must be a directory; otherwise name the expected layout and what is there."""
    if path.is_dir():
        return path
    parent = next((p for p in path.parents if p.is_dir()), None)
    found = sorted(p.name for p in parent.iterdir())[:15] if parent is not None else []
    where = f"; {parent} holds {found}" if parent is not None else ""
    raise DatasetLayoutError(
        f"missing folder {path}{where}. Expected layout: {layout}. Check the dataset root and "
        "the split name (train/val/test)"
    )


def list_files(folder: Path, suffixes: tuple[str, ...], recursive: bool = False) -> dict[str, Path]:
    """Files under ``folder`` keyed by path relative to it, minus the suffix (matches pairs)."""
    pattern = "**/*" if recursive else "*"
    files = {}
    for path in sorted(folder.glob(pattern)):
        suffix = next((s for s in suffixes if path.name.lower().endswith(s.lower())), None)
        if suffix is None or not path.is_file():
            continue
        key = str(path.relative_to(folder))[: -len(suffix)]
        files[key] = path
    return files


def pair_files(images: dict[str, Path], masks: dict[str, Path], layout: str) -> list[tuple[str, Path, Path]]:
    """(name, image, mask) for every key present in both; list the unpaired files otherwise."""
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"{len(lonely_images)} images without a mask: {_names(lonely_images, images)}")
        if lonely_masks:
            parts.append(f"{len(lonely_masks)} masks without an image: {_names(lonely_masks, masks)}")
        raise DatasetLayoutError(
            "; ".join(parts) + f". Expected layout: {layout}. Add the missing files or remove the "
            "extra ones (names must match apart from the suffix)"
        )
    if not images:
        raise DatasetLayoutError(f"no images found. Expected layout: {layout}")
    return [(Path(key).name, images[key], masks[key]) for key in sorted(images)]


def _names(keys: list[str], paths: dict[str, Path]) -> str:
    shown = [paths[k].name for k in keys[:10]]
    return str(shown) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")


def read_rgb(path: Path) -> np.ndarray:
    """A dataset image, decoded once by OpenCV straight to RGB uint8. EXIF orientation is not
    applied: a label mask is stored pixel-aligned with the stored image, not the displayed one."""
    from edgeseg.runtime.errors import ImageFileError
    from edgeseg.runtime.imagefile import read_image

    try:
        return read_image(path, orientation=False)
    except ImageFileError as exc:
        raise DatasetLayoutError(f"{exc}; fix or remove that file from the dataset") from exc


def read_mask_values(path: Path) -> np.ndarray:
    """The stored values of a label PNG (palette PNGs give their indices, not colours)."""
    try:
        from PIL import Image
    except ImportError:  # the runtime-only install: OpenCV and the PNG's own palette table
        from edgeseg.pngio import read_png_indices

        try:
            return read_png_indices(path)
        except ValueError as exc:
            raise DatasetLabelError(f"{path}: {exc}; save masks as 8-bit PNG") from exc

    with Image.open(path) as img:
        if img.mode not in ("L", "P", "I", "I;16", "RGB", "RGBA"):
            raise DatasetLabelError(f"{path}: unsupported mask mode {img.mode!r}; save masks as 8-bit PNG")
        return np.asarray(img)


class FileSegmentationDataset(SegmentationDataset):
    """Image/mask file pairs with a raw-id -> train-id table."""

    def __init__(
        self,
        name: str,
        classes: tuple[str, ...],
        palette: tuple[Colour, ...],
        pairs: list[tuple[str, Path, Path]],
        mapping: LabelMapping,
        on_bad_labels: str = "error",
    ):
        if on_bad_labels not in BAD_LABEL_POLICIES:
            raise DatasetSpecError(
                f"on_bad_labels={on_bad_labels!r} is not one of {BAD_LABEL_POLICIES}"
            )
        if len(palette) != len(classes):
            raise DatasetSpecError(f"{name}: {len(classes)} classes but {len(palette)} colours")
        self.name = name
        self.classes = tuple(classes)
        self.palette = tuple(tuple(int(c) for c in rgb) for rgb in palette)
        self.pairs = pairs
        self.mapping = mapping
        self.on_bad_labels = on_bad_labels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        name, image_path, mask_path = self.pairs[self._check_index(index)]
        image = read_rgb(image_path)
        mask, bad = self._train_ids(mask_path)
        if bad:
            message = (
                f"{mask_path}: mask values {list(bad)} are not in the {self.name} label table "
                f"({self.num_classes} classes, ignore {self.ignore_index})"
            )
            if self.on_bad_labels == "error":
                raise DatasetLabelError(
                    message + f"; fix the mask (class ids 0..{self.num_classes - 1}, {self.ignore_index} = "
                    "ignore), or treat such pixels as ignore: `edgeseg train ... --data-option "
                    "on_bad_labels=ignore` (Python: on_bad_labels='ignore'; dataset.validate() lists "
                    "every such file)"
                )
            warnings.warn(message + "; those pixels are ignored (255)", stacklevel=2)
        if mask.shape != image.shape[:2]:
            raise DatasetLabelError(
                f"{name}: mask {mask_path.name} is {mask.shape} but image {image_path.name} is "
                f"{image.shape[:2]}; a mask must have its image's height and width"
            )
        return Sample(image=image, mask=mask, name=name)

    def _train_ids(self, mask_path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
        raw = read_mask_values(mask_path)
        if raw.ndim != 2:
            raise DatasetLabelError(
                f"{mask_path}: mask has {raw.shape[2]} channels; {self.name} masks hold one id per "
                "pixel (a single-channel or palette PNG), not colours"
            )
        if raw.max(initial=0) > 255 or raw.min(initial=0) < 0:
            values = np.unique(raw[(raw > 255) | (raw < 0)])[:10].tolist()
            return np.full(raw.shape, IGNORE_INDEX, np.uint8), tuple(values)
        return self.mapping.apply(raw.astype(np.uint8))

    def _label_problem(self, index: int) -> tuple[LabelProblem | None, np.ndarray]:
        name, _, mask_path = self.pairs[index]
        mask, bad = self._train_ids(mask_path)
        return (LabelProblem(name, bad) if bad else None), mask
