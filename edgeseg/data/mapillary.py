"""Mapillary Vistas v1.2 (Neuhold et al., ICCV 2017): 66 labels stored as palette-PNG indices.

Train ids are the evaluated labels in order: 65 classes, with ``void--unlabeled`` (raw 65) -> 255.
When the dataset root holds ``config.json`` (shipped with Vistas), its ``labels`` list (name,
colour, ``evaluate``) is used instead of the built-in v1.2 table, so other versions work too:
labels with ``"evaluate": false`` map to 255.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeseg.data.errors import DatasetLayoutError
from edgeseg.data.files import FileSegmentationDataset, LabelMapping, list_files, pair_files, require_dir
from edgeseg.metrics import IGNORE_INDEX

LAYOUT = "ROOT/<split>/images/<name>.jpg and ROOT/<split>/labels/<name>.png (optional ROOT/config.json)"
SPLIT_FOLDERS = {"train": "training", "val": "validation", "test": "testing"}

# v1.2 labels in raw-id order: (name, colour, evaluated).
V12_LABELS = (
    ("animal--bird", (165, 42, 42)), ("animal--ground-animal", (0, 192, 0)),
    ("construction--barrier--curb", (196, 196, 196)), ("construction--barrier--fence", (190, 153, 153)),
    ("construction--barrier--guard-rail", (180, 165, 180)), ("construction--barrier--other-barrier", (90, 120, 150)),
    ("construction--barrier--wall", (102, 102, 156)), ("construction--flat--bike-lane", (128, 64, 255)),
    ("construction--flat--crosswalk-plain", (140, 140, 200)), ("construction--flat--curb-cut", (170, 170, 170)),
    ("construction--flat--parking", (250, 170, 160)), ("construction--flat--pedestrian-area", (96, 96, 96)),
    ("construction--flat--rail-track", (230, 150, 140)), ("construction--flat--road", (128, 64, 128)),
    ("construction--flat--service-lane", (110, 110, 110)), ("construction--flat--sidewalk", (244, 35, 232)),
    ("construction--structure--bridge", (150, 100, 100)), ("construction--structure--building", (70, 70, 70)),
    ("construction--structure--tunnel", (150, 120, 90)), ("human--person", (220, 20, 60)),
    ("human--rider--bicyclist", (255, 0, 0)), ("human--rider--motorcyclist", (255, 0, 100)),
    ("human--rider--other-rider", (255, 0, 200)), ("marking--crosswalk-zebra", (200, 128, 128)),
    ("marking--general", (255, 255, 255)), ("nature--mountain", (64, 170, 64)),
    ("nature--sand", (230, 160, 50)), ("nature--sky", (70, 130, 180)),
    ("nature--snow", (190, 255, 255)), ("nature--terrain", (152, 251, 152)),
    ("nature--vegetation", (107, 142, 35)), ("nature--water", (0, 170, 30)),
    ("object--banner", (255, 255, 128)), ("object--bench", (250, 0, 30)),
    ("object--bike-rack", (100, 140, 180)), ("object--billboard", (220, 220, 220)),
    ("object--catch-basin", (220, 128, 128)), ("object--cctv-camera", (222, 40, 40)),
    ("object--fire-hydrant", (100, 170, 30)), ("object--junction-box", (40, 40, 40)),
    ("object--mailbox", (33, 33, 33)), ("object--manhole", (100, 128, 160)),
    ("object--phone-booth", (142, 0, 0)), ("object--pothole", (70, 100, 150)),
    ("object--street-light", (210, 170, 100)), ("object--support--pole", (153, 153, 153)),
    ("object--support--traffic-sign-frame", (128, 128, 128)), ("object--support--utility-pole", (0, 0, 80)),
    ("object--traffic-light", (250, 170, 30)), ("object--traffic-sign--back", (192, 192, 192)),
    ("object--traffic-sign--front", (220, 220, 0)), ("object--trash-can", (140, 140, 20)),
    ("object--vehicle--bicycle", (119, 11, 32)), ("object--vehicle--boat", (150, 0, 255)),
    ("object--vehicle--bus", (0, 60, 100)), ("object--vehicle--car", (0, 0, 142)),
    ("object--vehicle--caravan", (0, 0, 90)), ("object--vehicle--motorcycle", (0, 0, 230)),
    ("object--vehicle--on-rails", (0, 80, 100)), ("object--vehicle--other-vehicle", (128, 64, 64)),
    ("object--vehicle--trailer", (0, 0, 110)), ("object--vehicle--truck", (0, 0, 70)),
    ("object--vehicle--wheeled-slow", (0, 0, 192)), ("void--car-mount", (32, 32, 32)),
    ("void--ego-vehicle", (120, 10, 10)), ("void--unlabeled", (0, 0, 0)),
)
V12_EVALUATED = tuple(name != "void--unlabeled" for name, _ in V12_LABELS)


def read_config(path: Path) -> tuple[list[str], list[tuple[int, int, int]], list[bool]]:
    """Names, colours and ``evaluate`` flags from a Vistas ``config.json``."""
    try:
        labels = json.loads(path.read_text())["labels"]
        names = [str(lab["name"]) for lab in labels]
        colours = [tuple(int(c) for c in lab["color"]) for lab in labels]
        evaluated = [bool(lab.get("evaluate", True)) for lab in labels]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetLayoutError(
            f"{path} is not a Mapillary Vistas config ({exc}); it needs a 'labels' list of "
            "{name, color, evaluate}; delete it to use the built-in v1.2 table"
        ) from exc
    if len(labels) > 255:
        raise DatasetLayoutError(f"{path}: {len(labels)} labels do not fit an 8-bit mask")
    return names, colours, evaluated


def label_table(names, colours, evaluated) -> tuple[tuple[str, ...], tuple, LabelMapping]:
    """Classes, palette and raw -> train mapping: evaluated labels renumbered in order."""
    raw_to_train, classes, palette = {}, [], []
    for raw, (name, colour, keep) in enumerate(zip(names, colours, evaluated)):
        if keep:
            raw_to_train[raw] = len(classes)
            classes.append(name)
            palette.append(colour)
        else:
            raw_to_train[raw] = IGNORE_INDEX
    return tuple(classes), tuple(palette), LabelMapping.from_dict(raw_to_train)


def load_mapillary(root: str | Path, split: str = "train", on_bad_labels: str = "error") -> FileSegmentationDataset:
    root = Path(root)
    folder = root / split
    if not folder.is_dir() and (root / SPLIT_FOLDERS.get(split, split)).is_dir():
        folder = root / SPLIT_FOLDERS[split]  # Vistas ships training/validation/testing
    image_dir = require_dir(folder / "images", LAYOUT)
    mask_dir = require_dir(folder / "labels", LAYOUT)
    pairs = pair_files(list_files(image_dir, (".jpg",)), list_files(mask_dir, (".png",)), LAYOUT)
    config = root / "config.json"
    if config.is_file():
        classes, palette, mapping = label_table(*read_config(config))
    else:
        names = [n for n, _ in V12_LABELS]
        classes, palette, mapping = label_table(names, [c for _, c in V12_LABELS], V12_EVALUATED)
    return FileSegmentationDataset("mapillary", classes, palette, pairs, mapping, on_bad_labels)
