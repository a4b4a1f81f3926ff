"""BDD100K semantic segmentation (Yu et al., CVPR 2020): masks are already in the 19
Cityscapes train ids with 255 = ignore, so the mapping is the identity on 0..18 and 255."""

from __future__ import annotations

from pathlib import Path

from edgeseg.data.cityscapes import CLASSES, PALETTE
from edgeseg.data.files import FileSegmentationDataset, LabelMapping, list_files, pair_files, require_dir

LAYOUT = "ROOT/images/10k/<split>/<name>.jpg and ROOT/labels/sem_seg/masks/<split>/<name>.png"


def load_bdd100k(root: str | Path, split: str = "train", on_bad_labels: str = "error") -> FileSegmentationDataset:
    root = Path(root)
    image_dir = require_dir(root / "images" / "10k" / split, LAYOUT)
    mask_dir = require_dir(root / "labels" / "sem_seg" / "masks" / split, LAYOUT)
    pairs = pair_files(list_files(image_dir, (".jpg",)), list_files(mask_dir, (".png",)), LAYOUT)
    return FileSegmentationDataset(
        "bdd100k", CLASSES, PALETTE, pairs, LabelMapping.identity(len(CLASSES)), on_bad_labels
    )
