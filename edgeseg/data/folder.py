"""A plain folder dataset any tool can write, and :func:`write_folder` to write one.

Layout (split subfolders are optional; without them the same files serve every split)::

    ROOT/classes.yaml or ROOT/classes.json   {"classes": [names...], "palette": [[r, g, b], ...]}
                                             (palette optional), or just [names...]
    ROOT/images[/<split>]/<name>.png|.jpg    RGB images
    ROOT/masks[/<split>]/<name>.png          train ids 0..N-1 (255 = ignore), one channel; or
                                             RGB masks painted in the palette's colours
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from edgeseg.data.base import SegmentationDataset
from edgeseg.data.errors import DatasetLabelError, DatasetLayoutError
from edgeseg.data.files import (
    IMAGE_SUFFIXES,
    FileSegmentationDataset,
    LabelMapping,
    list_files,
    pair_files,
    read_mask_values,
    require_dir,
)
from edgeseg.fileio import atomic_output, write_json_atomic
from edgeseg.metadata import default_palette
from edgeseg.metrics import IGNORE_INDEX

LAYOUT = (
    "ROOT/images[/<split>]/<name>.png|.jpg, ROOT/masks[/<split>]/<name>.png and "
    "ROOT/classes.yaml (or classes.json) with 'classes' and optional 'palette'"
)
CLASS_FILES = ("classes.yaml", "classes.yml", "classes.json")


def read_class_file(root: Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """The class names (and palette) of a folder dataset. The file holds either a mapping
    ``{"classes": [...], "palette": [[r, g, b], ...]}`` (palette optional) or just the list of
    class names; anything else is refused with an example of the format."""
    path = next((root / n for n in CLASS_FILES if (root / n).is_file()), None)
    if path is None:
        raise DatasetLayoutError(f"{root} has no {' / '.join(CLASS_FILES)}. Expected layout: {LAYOUT}")
    example = (
        "write e.g. {\"classes\": [\"road\", \"car\"], \"palette\": [[128, 64, 128], [0, 0, 142]]} "
        "(YAML or JSON), or just the list of class names"
    )
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # JSON/YAML parser errors, bytes that are not UTF-8
        raise DatasetLayoutError(f"{path} could not be parsed ({type(exc).__name__}: {exc}); {example}") from exc
    if isinstance(data, list):
        data = {"classes": data}
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise DatasetLayoutError(f"{path} holds no list under 'classes' (found {type(data).__name__}); {example}")
    names = data["classes"]
    bad = [c for c in names if isinstance(c, bool) or not isinstance(c, (str, int, float))]
    if bad:
        raise DatasetLayoutError(
            f"{path}: class names must be strings, found {bad[:3]!r}; quote names such as yes/no/null "
            f"in YAML; {example}"
        )
    classes = tuple(str(c) for c in names)
    if not classes or len(classes) >= IGNORE_INDEX:
        raise DatasetLayoutError(f"{path}: need 1..254 classes, found {len(classes)}")
    if len(set(classes)) != len(classes):
        raise DatasetLayoutError(f"{path}: class names repeat ({sorted({c for c in classes if classes.count(c) > 1})})")
    raw_palette = data.get("palette") or [list(c) for c in default_palette(len(classes))]
    if not isinstance(raw_palette, list) or not all(
        isinstance(rgb, list) and len(rgb) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb)
        for rgb in raw_palette
    ):
        raise DatasetLayoutError(f"{path}: 'palette' must be a list of [r, g, b] integers in 0..255; {example}")
    palette = tuple(tuple(rgb) for rgb in raw_palette)
    if len(palette) != len(classes):
        raise DatasetLayoutError(f"{path}: {len(classes)} classes but {len(palette)} palette colours")
    return classes, palette


class FolderDataset(FileSegmentationDataset):
    """Folder layout; masks may hold ids (one channel) or the palette's colours (RGB)."""

    def _train_ids(self, mask_path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
        raw = read_mask_values(mask_path)
        if raw.ndim == 2:
            return super()._train_ids(mask_path)
        return colour_mask_to_ids(raw[..., :3], self.palette)


def colour_mask_to_ids(rgb: np.ndarray, palette) -> tuple[np.ndarray, tuple[int, ...]]:
    """Map palette colours to ids; black (0, 0, 0) not in the palette means ignore."""
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    known = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(palette)}
    known.setdefault(0, IGNORE_INDEX)
    keys = np.array(sorted(known), dtype=np.int32)
    ids = np.array([known[k] for k in keys], dtype=np.uint8)
    pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    found = keys[pos] == codes
    mask = np.where(found, ids[pos], IGNORE_INDEX).astype(np.uint8)
    if found.all():
        return mask, ()
    bad = np.unique(codes[~found])[:10]
    return mask, tuple(int(c) for c in bad)  # 0xRRGGBB codes of unknown colours


def load_folder(root: str | Path, split: str = "train", on_bad_labels: str = "error") -> FolderDataset:
    root = Path(root)
    require_dir(root, LAYOUT)
    classes, palette = read_class_file(root)
    image_dir = require_dir(root / "images", LAYOUT)
    mask_dir = require_dir(root / "masks", LAYOUT)
    if (image_dir / split).is_dir() or (mask_dir / split).is_dir():
        image_dir = require_dir(image_dir / split, LAYOUT)
        mask_dir = require_dir(mask_dir / split, LAYOUT)
    elif split != "train":
        warnings.warn(
            f"{root} has no images/{split}/ folder: split {split!r} uses the same files as every "
            "other split, so its scores are not held out; add images/<split>/ and masks/<split>/",
            stacklevel=2,
        )
    pairs = pair_files(list_files(image_dir, IMAGE_SUFFIXES), list_files(mask_dir, (".png",)), LAYOUT)
    mapping = LabelMapping.identity(len(classes))
    return FolderDataset(f"folder:{root.name}", classes, palette, pairs, mapping, on_bad_labels)


def write_folder(dataset: SegmentationDataset, out_dir: str | Path, split: str | None = None) -> Path:
    """Write every sample as PNGs in the folder layout (ids in the masks) plus ``classes.json``.

    With ``split`` the files go to ``images/<split>/`` and ``masks/<split>/`` so several splits
    share one root. Each file is written atomically. Returns ``out_dir``.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    sub = Path(split) if split else Path()
    class_file = out_dir / "classes.json"
    info = {"name": dataset.name, "classes": list(dataset.classes), "palette": [list(c) for c in dataset.palette]}
    if class_file.is_file() and json.loads(class_file.read_text()).get("classes") != info["classes"]:
        raise DatasetLabelError(
            f"{class_file} lists other classes than {dataset.name}; write to an empty folder"
        )
    for i in range(len(dataset)):
        sample = dataset[i]
        with atomic_output(out_dir / "images" / sub / f"{sample.name}.png") as tmp:
            Image.fromarray(sample.image).save(tmp, format="PNG", compress_level=1)
        with atomic_output(out_dir / "masks" / sub / f"{sample.name}.png") as tmp:
            Image.fromarray(sample.mask).save(tmp, format="PNG", compress_level=1)
    write_json_atomic(class_file, info)
    return out_dir
