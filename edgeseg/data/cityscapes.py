"""Cityscapes: ``gtFine/*_labelIds.png`` (raw ids 0..33) -> the 19 official train ids.

The table is the one in cityscapesScripts ``helpers/labels.py`` (Cordts et al., CVPR 2016):
void and rarely-labelled classes (parking, rail track, guard rail, bridge, tunnel, polegroup,
caravan, trailer, ...) map to 255. Raw ids above 33 are not Cityscapes labels and are reported.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.data.files import FileSegmentationDataset, LabelMapping, list_files, pair_files, require_dir
from edgeseg.metrics import IGNORE_INDEX

LAYOUT = (
    "ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and "
    "ROOT/gtFine/<split>/<city>/<name>_gtFine_labelIds.png"
)

# (train id, name, colour) of the 19 evaluated classes, in train-id order.
CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# raw labelId -> train id, ids 0..33 (cityscapesScripts labels.py).
_I = IGNORE_INDEX
RAW_TO_TRAIN = {
    0: _I, 1: _I, 2: _I, 3: _I, 4: _I, 5: _I, 6: _I,  # unlabeled, ego vehicle, ... ground
    7: 0, 8: 1, 9: _I, 10: _I,  # road, sidewalk, parking, rail track
    11: 2, 12: 3, 13: 4, 14: _I, 15: _I, 16: _I,  # building, wall, fence, guard rail, bridge, tunnel
    17: 5, 18: _I, 19: 6, 20: 7,  # pole, polegroup, traffic light, traffic sign
    21: 8, 22: 9, 23: 10,  # vegetation, terrain, sky
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15,  # person, rider, car, truck, bus
    29: _I, 30: _I, 31: 16, 32: 17, 33: 18,  # caravan, trailer, train, motorcycle, bicycle
}


def load_cityscapes(root: str | Path, split: str = "train", on_bad_labels: str = "error") -> FileSegmentationDataset:
    root = Path(root)
    image_dir = require_dir(root / "leftImg8bit" / split, LAYOUT)
    mask_dir = require_dir(root / "gtFine" / split, LAYOUT)
    images = list_files(image_dir, ("_leftImg8bit.png",), recursive=True)
    masks = list_files(mask_dir, ("_gtFine_labelIds.png",), recursive=True)
    pairs = pair_files(images, masks, LAYOUT)
    return FileSegmentationDataset(
        "cityscapes", CLASSES, PALETTE, pairs, LabelMapping.from_dict(RAW_TO_TRAIN), on_bad_labels
    )
