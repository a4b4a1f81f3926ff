"""Real dataset layouts: tiny trees on disk, exact raw-id -> train-id mappings, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import (
    DatasetLabelError,
    DatasetLayoutError,
    DatasetSpecError,
    build_dataset,
    write_folder,
)

# Official Cityscapes labelIds 0..33 -> trainIds (cityscapesScripts helpers/labels.py), typed out
# here independently of edgeseg.data.cityscapes so a wrong table there fails this test.
CITYSCAPES_EXPECTED = [255] * 7 + [0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10,
                                   11, 12, 13, 14, 15, 255, 255, 16, 17, 18]


def _save_pair(image_path, mask_path, raw: np.ndarray, palette_png: bool = False) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.stack([raw, 255 - raw, np.full_like(raw, 7)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(image_path, quality=95)
    mask = Image.fromarray(raw.astype(np.uint8))
    if palette_png:  # Mapillary stores labels as palette indices with colours attached
        mask = Image.fromarray(raw.astype(np.uint8), mode="P")
        mask.putpalette([(i * 37) % 256 for i in range(768)])
    mask.save(mask_path)


def _all_values(values) -> np.ndarray:
    return np.array([list(values)] * 2, dtype=np.uint8)


def test_cityscapes_maps_every_label_id_to_the_official_train_id(tmp_path):
    raw = _all_values(range(34))
    _save_pair(tmp_path / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png",
               tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png", raw)
    ds = build_dataset(f"cityscapes:{tmp_path}", "val")
    sample = ds[0]
    assert len(ds) == 1 and ds.num_classes == 19 and ds.classes[13] == "car"
    assert sample.name == "aachen_000000_000019"
    assert sample.mask[0].tolist() == CITYSCAPES_EXPECTED
    assert sample.image.shape == (2, 34, 3) and sample.image.dtype == np.uint8


def test_cityscapes_unknown_label_id_is_reported_then_ignored_on_request(tmp_path):
    raw = _all_values([7, 26, 40])
    _save_pair(tmp_path / "leftImg8bit/train/x/a_leftImg8bit.png", tmp_path / "gtFine/train/x/a_gtFine_labelIds.png", raw)
    with pytest.raises(DatasetLabelError, match=r"a_gtFine_labelIds.png: mask values \[40\]"):
        build_dataset(f"cityscapes:{tmp_path}")[0]
    report = build_dataset(f"cityscapes:{tmp_path}").validate()
    assert not report.ok and report.bad_labels[0].name == "a" and report.bad_labels[0].values == (40,)
    assert "a: [40]" in report.summary()
    with pytest.warns(UserWarning, match="ignored"):
        mask = build_dataset(f"cityscapes:{tmp_path}", on_bad_labels="ignore")[0].mask
    assert mask[0].tolist() == [0, 13, 255]


def test_bdd100k_keeps_train_ids_and_ignore(tmp_path):
    raw = _all_values([*range(19), 255])
    _save_pair(tmp_path / "images/10k/train/0a0a0b1a-7c39d841.jpg", tmp_path / "labels/sem_seg/masks/train/0a0a0b1a-7c39d841.png", raw)
    ds = build_dataset(f"bdd100k:{tmp_path}", "train")
    assert ds[0].mask[0].tolist() == [*range(19), 255]
    assert ds.classes[0] == "road" and ds.classes[18] == "bicycle"
    _save_pair(tmp_path / "images/10k/val/b.jpg", tmp_path / "labels/sem_seg/masks/val/b.png", _all_values([3, 19]))
    with pytest.raises(DatasetLabelError, match=r"\[19\]"):
        build_dataset(f"bdd100k:{tmp_path}", "val")[0]


def test_mapillary_reads_palette_indices_and_ignores_unlabeled(tmp_path):
    raw = _all_values(range(66))
    _save_pair(tmp_path / "training/images/img1.jpg", tmp_path / "training/labels/img1.png", raw, palette_png=True)
    ds = build_dataset(f"mapillary:{tmp_path}", "train")
    assert ds.num_classes == 65 and ds.classes[13] == "construction--flat--road"
    assert ds.palette[13] == (128, 64, 128)
    assert ds[0].mask[0].tolist() == [*range(65), 255]


def test_mapillary_config_json_defines_the_table(tmp_path):
    config = {"labels": [
        {"name": "road", "color": [1, 2, 3], "evaluate": True},
        {"name": "void", "color": [0, 0, 0], "evaluate": False},
        {"name": "car", "color": [4, 5, 6], "evaluate": True},
    ]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    _save_pair(tmp_path / "val/images/a.jpg", tmp_path / "val/labels/a.png", _all_values([0, 1, 2, 3]), palette_png=True)
    ds = build_dataset(f"mapillary:{tmp_path}", "val", on_bad_labels="ignore")
    assert ds.classes == ("road", "car") and ds.palette == ((1, 2, 3), (4, 5, 6))
    with pytest.warns(UserWarning, match=r"\[3\]"):
        assert ds[0].mask[0].tolist() == [0, 255, 1, 255]


def test_ade20k_reduces_the_zero_label(tmp_path):
    raw = _all_values(range(151))
    _save_pair(tmp_path / "images/validation/ADE_val_00000001.jpg", tmp_path / "annotations/validation/ADE_val_00000001.png", raw)
    ds = build_dataset(f"ade20k:{tmp_path}", "val")
    assert ds.num_classes == 150 and ds.classes[0] == "wall" and ds.classes[149] == "flag"
    assert ds[0].mask[0].tolist() == [255, *range(150)]
    _save_pair(tmp_path / "images/training/b.jpg", tmp_path / "annotations/training/b.png", _all_values([0, 151]))
    with pytest.raises(DatasetLabelError, match=r"\[151\]"):
        build_dataset(f"ade20k:{tmp_path}", "train")[0]


def _folder(tmp_path, classes_text: str, name: str = "classes.yaml"):
    (tmp_path / name).write_text(classes_text)
    return tmp_path


def test_folder_dataset_with_yaml_ids_and_split_subfolders(tmp_path):
    _folder(tmp_path, "classes: [road, car, person]\npalette: [[1, 1, 1], [2, 2, 2], [3, 3, 3]]\n")
    _save_pair(tmp_path / "images/train/a.png", tmp_path / "masks/train/a.png", _all_values([0, 1, 2, 255]))
    _save_pair(tmp_path / "images/val/b.png", tmp_path / "masks/val/b.png", _all_values([2, 2, 1, 0]))
    train, val = build_dataset(f"folder:{tmp_path}", "train"), build_dataset(f"folder:{tmp_path}", "val")
    assert train.classes == ("road", "car", "person") and train.palette[2] == (3, 3, 3)
    assert train[0].mask[0].tolist() == [0, 1, 2, 255] and val[0].mask[0].tolist() == [2, 2, 1, 0]
    _save_pair(tmp_path / "images/test/c.png", tmp_path / "masks/test/c.png", _all_values([0, 3]))
    with pytest.raises(DatasetLabelError, match=r"values \[3\]"):
        build_dataset(f"folder:{tmp_path}", "test")[0]


def test_folder_dataset_reads_colour_masks_through_the_palette(tmp_path):
    _folder(tmp_path, json.dumps({"classes": ["a", "b"], "palette": [[10, 20, 30], [200, 0, 0]]}), "classes.json")
    colours = np.array([[[10, 20, 30], [200, 0, 0], [0, 0, 0], [9, 9, 9]]], np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(colours).save(tmp_path / "images/x.png")
    Image.fromarray(colours).save(tmp_path / "masks/x.png")
    ds = build_dataset(f"folder:{tmp_path}", on_bad_labels="ignore")
    with pytest.warns(UserWarning, match=str(0x090909)):
        assert ds[0].mask[0].tolist() == [0, 1, 255, 255]  # black = unlabeled, (9,9,9) = unknown
    with pytest.warns(UserWarning, match="not held out"):  # a flat folder has no separate val split
        assert len(build_dataset(f"folder:{tmp_path}", "val")) == 1


def test_write_folder_round_trips_exactly(tmp_path):
    from edgeseg.data.synthetic import SyntheticDataset

    source = SyntheticDataset("coarse", "val", size=(32, 64), length=3)
    write_folder(source, tmp_path / "out", split="val")
    loaded = build_dataset(f"folder:{tmp_path / 'out'}", "val")
    assert loaded.classes == source.classes and loaded.palette == source.palette and len(loaded) == 3
    for i in range(3):
        assert loaded[i].name == source[i].name
        np.testing.assert_array_equal(loaded[i].image, source[i].image)
        np.testing.assert_array_equal(loaded[i].mask, source[i].mask)
    assert not list((tmp_path / "out").rglob("*.tmp")), "atomic writes leave no temporaries"


def test_missing_or_misnamed_folder_names_the_expected_layout(tmp_path):
    (tmp_path / "leftImg8bit/train").mkdir(parents=True)
    (tmp_path / "gtfine").mkdir()  # wrong case
    with pytest.raises(DatasetLayoutError, match=r"missing folder .*gtFine/train.*gtfine.*Expected layout: ROOT/leftImg8bit"):
        build_dataset(f"cityscapes:{tmp_path}", "train")
    with pytest.raises(DatasetLayoutError, match=r"Expected layout: ROOT/images/10k"):
        build_dataset(f"bdd100k:{tmp_path / 'nowhere'}", "val")
    with pytest.raises(DatasetLayoutError, match="has no classes.yaml"):
        build_dataset(f"folder:{tmp_path}")


def test_unpaired_images_and_masks_are_listed_by_name(tmp_path):
    _save_pair(tmp_path / "images/training/a.jpg", tmp_path / "annotations/training/a.png", _all_values([1]))
    _save_pair(tmp_path / "images/training/b.jpg", tmp_path / "annotations/training/c.png", _all_values([1]))
    with pytest.raises(DatasetLayoutError, match=r"1 images without a mask: \['b.jpg'\]; 1 masks without an image: \['c.png'\]"):
        build_dataset(f"ade20k:{tmp_path}", "train")


def test_build_dataset_rejects_bad_specs_splits_and_options(tmp_path):
    with pytest.raises(DatasetSpecError, match="unknown dataset spec 'kitti:x'.*cityscapes:PATH"):
        build_dataset("kitti:x")
    with pytest.raises(DatasetSpecError, match="unknown split 'training'"):
        build_dataset("synthetic", "training")
    with pytest.raises(DatasetSpecError, match="needs the Cityscapes root folder"):
        build_dataset("cityscapes")
    with pytest.raises(DatasetSpecError, match=r"not \['sizes'\]"):
        build_dataset("synthetic:fog", sizes=(8, 8))
    with pytest.raises(DatasetSpecError, match="unknown synthetic domain 'rain'"):
        build_dataset("synthetic:rain")
    with pytest.raises(DatasetSpecError, match="on_bad_labels"):
        _save_pair(tmp_path / "images/10k/val/a.jpg", tmp_path / "labels/sem_seg/masks/val/a.png", _all_values([1]))
        build_dataset(f"bdd100k:{tmp_path}", "val", on_bad_labels="drop")


def test_edgeseg_data_does_not_import_torch():
    code = "import sys, edgeseg.data, edgeseg.data.synthetic, edgeseg.data.transforms; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd="/").returncode == 0
