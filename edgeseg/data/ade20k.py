"""ADE20K SceneParsing (Zhou et al., CVPR 2017): 150 classes; raw 0 = "other" -> 255 and every
other raw id minus 1 ("reduce zero label"), so train ids are 0..149."""

from __future__ import annotations

from pathlib import Path

from edgeseg.data.files import FileSegmentationDataset, LabelMapping, list_files, pair_files, require_dir
from edgeseg.metadata import default_palette
from edgeseg.metrics import IGNORE_INDEX

LAYOUT = "ROOT/images/<split>/<name>.jpg and ROOT/annotations/<split>/<name>.png"
SPLIT_FOLDERS = {"train": "training", "val": "validation"}

# SceneParsing objectInfo150 names, in raw-id order 1..150 (first name of each synonym list).
CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
assert len(CLASSES) == 150
PALETTE = default_palette(len(CLASSES))

# reduce zero label: 0 -> ignore, k -> k - 1.
RAW_TO_TRAIN = {0: IGNORE_INDEX, **{raw: raw - 1 for raw in range(1, 151)}}


def load_ade20k(root: str | Path, split: str = "train", on_bad_labels: str = "error") -> FileSegmentationDataset:
    root = Path(root)
    folder = split
    if not (root / "images" / split).is_dir() and (root / "images" / SPLIT_FOLDERS.get(split, split)).is_dir():
        folder = SPLIT_FOLDERS[split]  # the ADEChallengeData2016 zip names them training/validation
    image_dir = require_dir(root / "images" / folder, LAYOUT)
    mask_dir = require_dir(root / "annotations" / folder, LAYOUT)
    pairs = pair_files(list_files(image_dir, (".jpg",)), list_files(mask_dir, (".png",)), LAYOUT)
    return FileSegmentationDataset(
        "ade20k", CLASSES, PALETTE, pairs, LabelMapping.from_dict(RAW_TO_TRAIN), on_bad_labels
    )
