"""The synthetic multi-domain dataset: determinism, splits, classes, domains, difficulty."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import build_dataset
from edgeseg.data.synthetic import COARSE_CLASSES, FINE_CLASSES, SYNTHETIC_DOMAINS, SyntheticDataset
from edgeseg.metrics import ConfusionMatrix

SIZE = (64, 128)


def test_same_seed_same_pixels_and_other_split_or_seed_other_pixels():
    a = SyntheticDataset("day", "train", size=SIZE, length=4, seed=3)
    b = SyntheticDataset("day", "train", size=SIZE, length=4, seed=3)
    for i in (0, 3, 1):  # order of access must not matter
        np.testing.assert_array_equal(a[i].image, b[i].image)
        np.testing.assert_array_equal(a[i].mask, b[i].mask)
    val = SyntheticDataset("day", "val", size=SIZE, length=4, seed=3)
    other_seed = SyntheticDataset("day", "train", size=SIZE, length=4, seed=4)
    for i in range(4):
        assert not np.array_equal(a[i].mask, val[i].mask)
        assert not np.array_equal(a[i].image, other_seed[i].image)
    assert a[0].name != val[0].name
    assert not np.array_equal(a[0].image, a[1].image)


def test_dataset_pickles_for_spawned_loader_workers():
    import pickle

    ds = SyntheticDataset("coarse", "val", size=SIZE, length=2, seed=5)
    copy = pickle.loads(pickle.dumps(ds))
    assert repr(copy) == "SyntheticDataset(domain='coarse', split='val', size=(64, 128), length=2, seed=5)"
    np.testing.assert_array_equal(copy[1].image, ds[1].image)


def test_samples_have_the_contract_types():
    ds = build_dataset("synthetic:night", "test", size=SIZE, length=2)
    s = ds[1]
    assert s.image.shape == (*SIZE, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == SIZE and s.mask.dtype == np.uint8
    assert ds.ignore_index == 255 and len(ds.palette) == len(ds.classes) == 9
    with pytest.raises(IndexError):
        ds[2]


def test_every_class_appears_over_a_handful_of_images():
    for domain in ("day", "coarse"):
        ds = SyntheticDataset(domain, "train", size=(128, 256), length=8)
        seen = np.zeros(ds.num_classes, bool)
        for i in range(len(ds)):
            seen[np.unique(ds[i].mask)] = True
        assert seen.all(), f"{domain}: classes never drawn: {[c for c, s in zip(ds.classes, seen) if not s]}"
        assert ds.validate().ok


def test_label_space_domain_has_its_own_coarser_classes():
    assert "coarse" in SYNTHETIC_DOMAINS and {"day", "night", "fog"} <= set(SYNTHETIC_DOMAINS)
    fine, coarse = SyntheticDataset("fog", size=SIZE, length=1), SyntheticDataset("coarse", size=SIZE, length=1)
    assert fine.classes == FINE_CLASSES and coarse.classes == COARSE_CLASSES
    assert len(coarse.classes) < len(fine.classes)
    assert coarse[0].mask.max() < len(COARSE_CLASSES)


def _stats(domain: str) -> dict[str, float]:
    ds = SyntheticDataset(domain, "val", size=SIZE, length=6)
    images = np.stack([ds[i].image for i in range(len(ds))]).astype(np.float32)
    return {
        "brightness": images.mean(),
        "saturation": (images.max(-1) - images.min(-1)).mean(),
        "local_contrast": np.abs(np.diff(images, axis=2)).mean(),
        "warmth": images[..., 0].mean() - images[..., 2].mean(),
    }


def test_domains_differ_in_appearance_statistics():
    day, night, fog, dusk = _stats("day"), _stats("night"), _stats("fog"), _stats("coarse")
    assert night["brightness"] < 0.6 * day["brightness"], "night is darker than day"
    assert fog["brightness"] > day["brightness"], "fog washes the scene out towards a bright fog colour"
    assert fog["saturation"] < 0.7 * day["saturation"], "fog greys colours out"
    assert fog["local_contrast"] < 0.75 * day["local_contrast"], "fog hides texture and edges"
    assert dusk["warmth"] > day["warmth"] + 15, "the coarse domain is lit by a warm dusk light"


def test_colour_alone_does_not_solve_the_dataset():
    """A per-pixel colour lookup fitted on the very images it is scored on stays far from 100."""
    ds = SyntheticDataset("day", "train", size=SIZE, length=6)
    bins = 16
    codes = [(s.image // (256 // bins)).astype(np.int64) @ np.array([bins * bins, bins, 1]) for s in (ds[i] for i in range(6))]
    masks = [ds[i].mask for i in range(6)]
    counts = np.zeros((bins**3, ds.num_classes), np.int64)
    for c, m in zip(codes, masks):
        np.add.at(counts, (c.ravel(), m.ravel().astype(np.int64)), 1)
    cm = ConfusionMatrix(ds.num_classes)
    for c, m in zip(codes, masks):
        cm.update(counts.argmax(1)[c], m)
    assert cm.scores().miou < 0.6


def test_bad_arguments_are_clear_errors():
    from edgeseg.data import DatasetSpecError

    with pytest.raises(DatasetSpecError, match="choose one of"):
        SyntheticDataset("snow")
    with pytest.raises(DatasetSpecError, match="too small"):
        SyntheticDataset("day", size=(8, 8))
    with pytest.raises(DatasetSpecError, match="length"):
        SyntheticDataset("day", length=0)
