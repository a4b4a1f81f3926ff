"""Joint transforms: image and mask stay aligned through scale/crop/flip; padding is 255."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import Sample
from edgeseg.data.transforms import EvalTransform, TrainTransform
from edgeseg.errors import ConfigError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _blocky_sample(h: int = 64, w: int = 96, block: int = 8, seed: int = 0) -> Sample:
    """A mask of random 8x8 blocks and an image whose red channel encodes the mask (id * 20)."""
    rng = np.random.default_rng(seed)
    mask = np.kron(rng.integers(0, 10, (h // block, w // block)), np.ones((block, block), np.int64)).astype(np.uint8)
    image = np.stack([mask * 20, np.full_like(mask, 100), np.arange(w, dtype=np.uint8)[None].repeat(h, 0)], -1)
    return Sample(image=image.astype(np.uint8), mask=mask, name="blocks")


def _decode_ids(image_chw: np.ndarray) -> np.ndarray:
    red = (image_chw[0] * STD[0] + MEAN[0]) * 255.0
    return np.rint(red / 20.0).astype(np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_mask_aligned(seed):
    sample = _blocky_sample()
    transform = TrainTransform((48, 64), mean=MEAN, std=STD, scale=(0.5, 2.0), color_jitter=0.0)
    image, mask = transform.apply(sample, np.random.default_rng(seed))
    assert image.shape == (3, 48, 64) and image.dtype == np.float32
    assert mask.shape == (48, 64) and mask.dtype == np.int64
    # Bilinear resizing blends the image across block edges; inside a block it must decode exactly.
    padded = np.pad(mask, 1, mode="edge")
    interior = np.ones_like(mask, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            interior &= padded[dy : dy + 48, dx : dx + 64] == mask
    interior &= mask != 255
    assert interior.sum() > 200
    agree = (_decode_ids(image) == mask)[interior].mean()
    assert agree > 0.98, f"only {agree:.2%} of block pixels decode to their mask id"


def test_flip_moves_image_and_mask_together():
    sample = _blocky_sample()
    transform = TrainTransform((64, 96), mean=MEAN, std=STD, scale=(1.0, 1.0), color_jitter=0.0)
    outputs = [transform.apply(sample, np.random.default_rng(s)) for s in range(8)]
    flipped = [m for _, m in outputs if np.array_equal(m, sample.mask[:, ::-1])]
    kept = [m for _, m in outputs if np.array_equal(m, sample.mask)]
    assert flipped and kept and len(flipped) + len(kept) == 8
    for image, mask in outputs:
        np.testing.assert_array_equal(_decode_ids(image), mask)  # scale 1: no resampling at all


def test_padding_uses_ignore_in_the_mask_and_the_mean_in_the_image():
    sample = _blocky_sample(32, 48)
    transform = TrainTransform((64, 96), mean=MEAN, std=STD, scale=(0.5, 0.5), flip=False, color_jitter=0.0)
    image, mask = transform.apply(sample, np.random.default_rng(0))
    np.testing.assert_array_equal(mask[:32, :48], sample.mask)  # half scale of "covering" = original size
    assert (mask[32:] == 255).all() and (mask[:, 48:] == 255).all()
    assert (image[:, 32:] == 0).all() and (image[:, :, 48:] == 0).all()


def test_colour_jitter_changes_the_image_only():
    sample = _blocky_sample()
    plain = TrainTransform((64, 96), scale=(1.0, 1.0), flip=False, color_jitter=0.0)
    jitter = TrainTransform((64, 96), scale=(1.0, 1.0), flip=False, color_jitter=0.4)
    (a, ma), (b, mb) = plain.apply(sample, np.random.default_rng(1)), jitter.apply(sample, np.random.default_rng(1))
    np.testing.assert_array_equal(ma, mb)
    assert np.abs(a - b).mean() > 0.01


def test_same_generator_seed_same_augmentation_and_torch_output():
    torch = pytest.importorskip("torch")
    sample = _blocky_sample()
    transform = TrainTransform((40, 40))
    a = transform.apply(sample, np.random.default_rng(5))
    b = transform.apply(sample, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    image, mask = transform(sample, np.random.default_rng(5))
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32 and mask.dtype == torch.int64
    np.testing.assert_array_equal(image.numpy(), a[0])


def test_eval_transform_resizes_mask_with_nearest_and_normalizes():
    sample = _blocky_sample()
    image, mask = EvalTransform((32, 48), mean=MEAN, std=STD).apply(sample)
    np.testing.assert_array_equal(mask, sample.mask[::2, ::2])
    assert set(np.unique(mask)) <= set(np.unique(sample.mask))
    full_image, full_mask = EvalTransform(None, mean=MEAN, std=STD).apply(sample)
    np.testing.assert_array_equal(_decode_ids(full_image), full_mask)
    np.testing.assert_allclose(full_image[1], (100 / 255 - 0.5) / 0.25, rtol=1e-6)


def test_torch_dataset_batches_and_reseeds_per_process():
    torch = pytest.importorskip("torch")
    from edgeseg.data import TorchDataset
    from edgeseg.data.synthetic import SyntheticDataset

    data = TorchDataset(SyntheticDataset("fog", "train", size=(32, 64), length=4), TrainTransform((24, 32)))
    torch.manual_seed(1)
    first, next_draw = data[0][0], data[0][0]
    torch.manual_seed(2)
    other = data[0][0]
    torch.manual_seed(1)  # a new torch seed (a new worker or epoch) restarts the numpy stream
    again = data[0][0]
    assert not torch.equal(first, next_draw), "one stream: each draw is a new augmentation"
    assert torch.equal(first, again) and not torch.equal(first, other)
    images, masks = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert images.shape == (4, 3, 24, 32) and masks.shape == (4, 24, 32) and masks.dtype == torch.int64


class _SameSample:
    """Every index is the same picture, so only the augmentation can make items differ."""

    def __init__(self, sample: Sample, length: int):
        self.sample, self.length = sample, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        return self.sample


def test_dataloader_workers_draw_different_augmentations():
    torch = pytest.importorskip("torch")
    from edgeseg.data import TorchDataset

    data = TorchDataset(_SameSample(_blocky_sample(), 4), TrainTransform((32, 48)))
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(data, batch_size=1, num_workers=2)
    items = [image[0] for image, _ in loader]  # worker 0 makes items 0 and 2, worker 1 items 1 and 3
    assert not torch.equal(items[0], items[1]), "two workers must not repeat each other's augmentation"
    assert not torch.equal(items[0], items[2])


def test_bad_transform_settings_are_errors():
    with pytest.raises(ConfigError, match="height, width"):
        TrainTransform((0, 10))
    with pytest.raises(ConfigError, match="scale"):
        TrainTransform((8, 8), scale=(2.0, 1.0))
    with pytest.raises(ConfigError, match="color_jitter"):
        TrainTransform((8, 8), color_jitter=1.5)
