"""SyntheticDataset: procedural street scenes, deterministic by (seed, split, index, domain)."""

from __future__ import annotations

import numpy as np

from edgeseg.data.base import SPLITS, Sample, SegmentationDataset
from edgeseg.data.errors import DatasetSpecError
from edgeseg.data.synthetic.domains import DOMAIN_STYLES, FINE_TO_COARSE, SYNTHETIC_DOMAINS, domain_classes
from edgeseg.data.synthetic.render import render
from edgeseg.data.synthetic.scene import paint_scene

# Each split draws from its own seed stream, so val/test images never repeat a train image.
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTH = {"train": 2000, "val": 200, "test": 200}


def _import_cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "the synthetic dataset draws with OpenCV: pip install opencv-python-headless "
            "(or edgeseg[demo])"
        ) from exc
    return cv2


class SyntheticDataset(SegmentationDataset):
    """Street scenes drawn on the fly; ``dataset[i]`` is the same pixels every time.

    Args:
        domain: one of :data:`SYNTHETIC_DOMAINS` (``day``, ``night``, ``fog``, ``coarse``).
        split: ``train``, ``val`` or ``test``: each split has its own random stream.
        size: (height, width) of every image.
        length: number of images (default 2000 for train, 200 for val and test).
        seed: base seed; the same (seed, split, index, domain) always gives the same sample.
    """

    def __init__(self, domain: str = "day", split: str = "train", size: tuple[int, int] = (256, 512), length: int | None = None, seed: int = 0):
        if domain not in DOMAIN_STYLES:
            raise DatasetSpecError(f"unknown synthetic domain {domain!r}; choose one of {SYNTHETIC_DOMAINS}")
        if split not in SPLITS:
            raise DatasetSpecError(f"unknown split {split!r}; choose one of {SPLITS}")
        height, width = (int(v) for v in size)
        if height < 16 or width < 16:
            raise DatasetSpecError(f"size {size} is too small; use at least 16 x 16 (e.g. (128, 256))")
        self.domain, self.split, self.size, self.seed = domain, split, (height, width), int(seed)
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length < 1:
            raise DatasetSpecError(f"length must be >= 1, got {length}")
        self.style = DOMAIN_STYLES[domain]
        self.name = f"synthetic:{domain}"
        self.classes, self.palette = domain_classes(domain)
        self._relabel = np.array(FINE_TO_COARSE + (255,) * (256 - len(FINE_TO_COARSE)), np.uint8) if self.style.coarse_labels else None
        _import_cv2()  # fail here, with the install hint, rather than in a loader worker

    def __repr__(self) -> str:
        return (
            f"SyntheticDataset(domain={self.domain!r}, split={self.split!r}, size={self.size}, "
            f"length={self.length}, seed={self.seed})"
        )

    def __len__(self) -> int:
        return self.length

    def rng_for(self, index: int) -> np.random.Generator:
        domain_code = SYNTHETIC_DOMAINS.index(self.domain)
        return np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], domain_code, index])

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        rng = self.rng_for(index)
        cv2 = _import_cv2()  # not stored on self: the dataset must pickle into loader workers
        canvas = paint_scene(cv2, rng, *self.size, self.style)
        image = render(cv2, rng, canvas, self.style)
        mask = canvas.label if self._relabel is None else cv2.LUT(canvas.label, self._relabel)
        return Sample(image=image, mask=mask, name=f"{self.domain}_{self.split}_{self.seed}_{index:06d}")
