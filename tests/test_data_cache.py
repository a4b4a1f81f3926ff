"""The decoded, downscaled sample cache: stored at the largest size the random scale draws, read
back without touching the source, rebuilt when the dataset changes or a file is damaged, and the
crops drawn from it match the crops drawn from the full-size images."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from edgeseg.data.cache import DownscaledCache, cached_size
from edgeseg.data.folder import load_folder
from edgeseg.data.transforms import TrainTransform

CROP = (32, 64)


def _scene(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Large flat regions (like a street scene): blocks of one class with one colour each."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 3, (height // 48, width // 48)).astype(np.uint8)
    mask = np.kron(blocks, np.ones((48, 48), np.uint8))
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)
    noise = rng.integers(-8, 9, (height, width, 3))
    return np.clip(colours[mask].astype(int) + noise, 0, 255).astype(np.uint8), mask


@pytest.fixture()
def folder(tmp_path):
    for sub in ("images/train", "masks/train"):
        (tmp_path / sub).mkdir(parents=True)
    for i in range(3):
        image, mask = _scene(192, 384, seed=i)
        Image.fromarray(image).save(tmp_path / "images/train" / f"f{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks/train" / f"f{i}.png")
    (tmp_path / "classes.yaml").write_text("classes: [a, b, c]\n")
    return tmp_path


def test_cached_size_is_the_largest_drawn_size():
    assert cached_size((192, 384), CROP, 2.0) == (64, 128)  # covers the crop at 1/6, x2
    assert cached_size((1024, 2048), (512, 1024), 2.0) == (1024, 2048)  # never upscaled
    assert cached_size((40, 50), CROP, 2.0) == (40, 50)


def test_samples_are_stored_downscaled_and_read_back_without_the_source(folder, tmp_path, monkeypatch):
    source = load_folder(folder, "train")
    cache = DownscaledCache(source, tmp_path / "cache", crop=CROP, max_scale=2.0)
    first = [cache[i] for i in range(len(cache))]
    assert len(list(cache.folder.glob("*.npz"))) == 3
    assert first[0].image.shape == (64, 128, 3) and first[0].mask.shape == (64, 128)
    assert set(np.unique(first[0].mask)) <= set(np.unique(source[0].mask))  # labels never blended

    def no_source(index):
        raise AssertionError("the cache read the source again")

    monkeypatch.setattr(type(source), "__getitem__", lambda self, i: no_source(i))
    again = DownscaledCache(source, tmp_path / "cache", crop=CROP, max_scale=2.0)
    for a, b in zip(first, (again[i] for i in range(3))):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.name == b.name


def test_crops_from_the_cache_match_crops_from_full_size_images(folder, tmp_path):
    source = load_folder(folder, "train")
    cache = DownscaledCache(source, tmp_path / "cache", crop=CROP, max_scale=2.0)
    transform = TrainTransform(CROP, scale=(0.5, 2.0), color_jitter=0.0)
    agree, diffs = [], []
    for i in range(3):
        for seed in range(10):
            full = transform.geometry(source[i], np.random.default_rng(seed))
            small = transform.geometry(cache[i], np.random.default_rng(seed))
            assert full.valid == small.valid
            h, w = full.valid
            agree.append(np.mean(full.mask[:h, :w] == small.mask[:h, :w]))
            diffs.append(np.abs(full.image[:h, :w].astype(int) - small.image[:h, :w]).mean())
    assert np.mean(agree) > 0.97, np.mean(agree)  # only block edges may move by a source pixel
    assert np.mean(diffs) < 8.0, np.mean(diffs)  # the same scene; noise averaged by the area filter


def test_an_edited_dataset_gets_a_fresh_folder_and_a_damaged_sample_is_rebuilt(folder, tmp_path):
    source = load_folder(folder, "train")
    cache = DownscaledCache(source, tmp_path / "cache", crop=CROP, max_scale=2.0)
    reference = cache[1]
    damaged = cache.folder / "0000001.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    rebuilt = cache[1]
    np.testing.assert_array_equal(rebuilt.image, reference.image)
    assert damaged.stat().st_size > 1000
    other = DownscaledCache(source, tmp_path / "cache", crop=CROP, max_scale=1.5)
    assert other.folder != cache.folder  # another scale range, another folder
    image, _ = _scene(192, 384, seed=9)
    Image.fromarray(image).save(folder / "images/train" / "f1.png")
    os.utime(folder / "images/train" / "f1.png", ns=(1, 1))
    edited = DownscaledCache(load_folder(folder, "train"), tmp_path / "cache", crop=CROP, max_scale=2.0)
    assert edited.folder != cache.folder
    assert not np.array_equal(edited[1].image, reference.image)


def test_training_with_a_cache_dir_fills_it(tmp_path):
    from train_helpers import tiny_cfg

    from edgeseg.train import train

    train(tiny_cfg(tmp_path, cache_dir=str(tmp_path / "cache"), iters=2), progress=False)
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("synthetic_day-64x64-s2-")
    assert len(list(folders[0].glob("*.npz"))) >= 4  # 2 steps x batch 2
