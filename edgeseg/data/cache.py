"""Decoded, downscaled training samples kept on disk: decode and resize a large photo once, not
once per epoch.

When the training crop is much smaller than the dataset's images (256x512 crops from 1024x2048
Cityscapes frames), every epoch decodes full-size JPEG/PNG files and then throws most pixels away
in the warp. :class:`DownscaledCache` stores each sample once as raw uint8 arrays (an uncompressed
``.npz`` per sample, read back with no decoding), downscaled to the largest size the training transform can ever draw:

    cached side = source side x min(1, cover x max_scale)

where ``cover`` is the scale at which the image just covers the crop (the transform's scale 1.0)
and ``max_scale`` the top of its random-scale range. Every crop the transform draws from the
cached image samples the same scene region at no more than the cached resolution, so the
augmentation is unchanged up to resampling (images: area filter; masks: nearest, labels never
blended). Images already that small are stored as they are.

The cache lives in ``cache_dir/<dataset>-<crop>-s<max_scale>-<fingerprint>/``; the fingerprint
covers the dataset's settings (split, size, seed, ...), its sample names and, for file datasets,
each file's size and modification time, so an
edited dataset gets a fresh folder (delete old folders by hand). Samples are written atomically
on first use, by whichever loader worker or process reads them first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgeseg.data.base import Sample, SegmentationDataset
from edgeseg.data.errors import DatasetSpecError
from edgeseg.fileio import atomic_output, write_json_atomic

CACHE_VERSION = 1


def cached_size(shape: tuple[int, int], crop: tuple[int, int], max_scale: float) -> tuple[int, int]:
    """(height, width) a sample of ``shape`` is stored at for ``crop`` and scale range top ``max_scale``."""
    in_h, in_w = shape
    factor = min(1.0, max(crop[0] / in_h, crop[1] / in_w) * max_scale)
    return max(round(in_h * factor), 1), max(round(in_w * factor), 1)


class DownscaledCache(SegmentationDataset):
    """``dataset``'s samples, each decoded once and stored downscaled in ``cache_dir``."""

    def __init__(self, dataset: SegmentationDataset, cache_dir: str | os.PathLike[str], *,
                 crop: tuple[int, int], max_scale: float) -> None:
        if max_scale <= 0:
            raise DatasetSpecError(f"max_scale {max_scale} must be > 0 (the top of the train scale range)")
        self.dataset = dataset
        self.name, self.classes, self.palette = dataset.name, dataset.classes, dataset.palette
        self.crop, self.max_scale = (int(crop[0]), int(crop[1])), float(max_scale)
        tag = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset.name)
        self.folder = Path(cache_dir) / (
            f"{tag}-{self.crop[0]}x{self.crop[1]}-s{self.max_scale:g}-{self._fingerprint():08x}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest = self.folder / "manifest.json"
            if not manifest.exists():
                write_json_atomic(manifest, {"version": CACHE_VERSION, "dataset": dataset.name,
                                             "crop": list(self.crop), "max_scale": self.max_scale,
                                             "samples": len(dataset)})
        except OSError as exc:
            raise DatasetSpecError(
                f"cache folder {self.folder} cannot be written ({exc.strerror}); give a writable "
                "--cache-dir or leave it out"
            ) from exc

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        path = self.folder / f"{index:07d}.npz"
        with contextlib.suppress(OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or bad: rebuilt
            with np.load(path, allow_pickle=False) as stored:
                image, mask, name = stored["image"], stored["mask"], str(stored["name"])
            if image.dtype == np.uint8 and mask.dtype == np.uint8 and image.shape[:2] == mask.shape:
                return Sample(image, mask, name)
        return self._store(index, path)

    def _store(self, index: int, path: Path) -> Sample:
        import cv2

        sample = self.dataset[index]
        height, width = cached_size(sample.mask.shape, self.crop, self.max_scale)
        image, mask = sample.image, sample.mask
        if (height, width) != mask.shape:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
        image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
        # One uncompressed archive per sample, renamed into place whole: never half a pair.
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, image=image, mask=mask, name=np.array(sample.name))
        return Sample(image, mask, sample.name)

    def _fingerprint(self) -> int:
        settings = {k: v for k, v in sorted(vars(self.dataset).items())
                    if isinstance(v, (str, int, float, bool, tuple)) and not k.startswith("_")}
        parts = [str(CACHE_VERSION), type(self.dataset).__name__, repr(settings), str(len(self.dataset))]
        for pair in getattr(self.dataset, "pairs", ()):  # file datasets: (name, image, mask)
            parts.append(str(pair[0]))
            for file in pair[1:]:
                with contextlib.suppress(OSError):
                    stat = Path(file).stat()
                    parts.append(f"{file}:{stat.st_size}:{stat.st_mtime_ns}")
        return zlib.crc32(json.dumps(parts).encode())
