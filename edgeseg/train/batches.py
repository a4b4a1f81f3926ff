"""Training batches from loader workers to the device, with the GPU kept busy.

The data path (measured in ``benchmarks/gpu_train.py``):

- Workers run the geometry stage (:meth:`TrainTransform.geometry`: scale, crop and flip as one
  uint8 warp) and send uint8 crops, uint8 masks and each crop's jitter factors and valid size.
- :class:`PixelStage` does colour jitter and normalization on a whole batch in torch. On CUDA it
  runs on the GPU after a non-blocking copy from pinned memory. On CPU the workers finish each
  crop with the numpy twin of that stage (faster there), so the training process only trains.
- :class:`DeviceBatches` keeps the next step's copy in flight on a side stream while the current
  step runs, and nothing here reads a value back to the host.

The arithmetic is :func:`edgeseg.data.transforms.pixels_to_chw`'s, on batches (a test holds the
two together).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeseg.data.errors import DatasetError
from edgeseg.data.transforms import LUMA, Crop, pixels_to_chw


class CropBatch(NamedTuple):
    """What the workers send: uint8 pixels, never float."""

    images: torch.Tensor  # N x H x W x 3 uint8 RGB
    masks: torch.Tensor  # N x H x W uint8 train ids (255 = ignore)
    params: torch.Tensor  # N x 5 float32: brightness, contrast, saturation, valid h, valid w


class PixelStage:
    """Colour jitter and normalization of a :class:`CropBatch`, in torch, on its device.

    Returns (N x 3 x H x W float32, N x H x W int64 masks); padding is 0 in the image and 255 in
    the mask, as in the numpy stage. ``channels_last`` picks the images' memory format (NHWC for
    CUDA convolutions; plain NCHW for the CPU).
    """

    def __init__(self, mean, std, *, jitter: bool, channels_last: bool = False) -> None:
        self.scale = [1.0 / (255.0 * s) for s in std]
        self.shift = [-m / s for m, s in zip(mean, std)]
        self.jitter = jitter
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, batch: CropBatch) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks, params = batch
        n, height, width, _ = images.shape
        device = images.device
        # NHWC uint8 -> NCHW float whose memory is channels_last (no transpose copy); then in place.
        x = images.permute(0, 3, 1, 2).float()
        rows = torch.arange(height, device=device).view(1, 1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, 1, width)
        valid = ((rows < params[:, 3].view(n, 1, 1, 1)) & (cols < params[:, 4].view(n, 1, 1, 1))).float()
        if self.jitter:
            self._jitter(x, params[:, :3], valid)
        scale = torch.tensor(self.scale, device=device).view(1, 3, 1, 1)
        shift = torch.tensor(self.shift, device=device).view(1, 3, 1, 1)
        x.mul_(scale).add_(shift).mul_(valid)  # padding -> 0, the mean colour
        return x.contiguous(memory_format=self.memory_format), masks.long()

    @staticmethod
    def _jitter(x: torch.Tensor, factors: torch.Tensor, valid: torch.Tensor) -> None:
        n = x.shape[0]
        brightness, contrast, saturation = (factors[:, i].view(n, 1, 1, 1) for i in range(3))
        luma = torch.tensor(LUMA, device=x.device)
        x.mul_(brightness)
        grey = torch.einsum("nchw,c->nhw", x, luma).unsqueeze(1)
        # The mean grey of the valid region alone (the numpy stage jitters the crop before padding).
        mean_grey = (grey * valid).sum((2, 3), keepdim=True) / valid.sum((2, 3), keepdim=True).clamp(min=1)
        x.mul_(contrast).add_(mean_grey * (1 - contrast))  # (x - m) * c + m
        grey = torch.einsum("nchw,c->nhw", x, luma).unsqueeze(1)
        x.mul_(saturation).add_(grey * (1 - saturation)).clamp_(0, 255)


class CropItems(Dataset):
    """``geometry(dataset[index], rng)`` with a generator seeded per item: each crop is a
    function of its seed, whichever worker makes it."""

    def __init__(self, dataset: Any, transform: Any) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Crop:
        index, seed = item
        return self.transform.geometry(self.dataset[index], np.random.default_rng(seed))


class CollateCrops:
    """Stack crops into a :class:`CropBatch` (for the GPU's :class:`PixelStage`); or, given
    ``mean``/``std`` (CPU training), finish each crop in the worker with the numpy pixel stage
    (:func:`~edgeseg.data.transforms.pixels_to_chw`, the same arithmetic; measured faster than
    torch's batched version on a CPU) and stack (float images, int64 masks)."""

    def __init__(self, mean=None, std=None, *, jitter: bool = False) -> None:
        self.mean, self.std, self.jitter = mean, std, jitter

    def __call__(self, crops: list[Crop]):
        if self.mean is not None:
            pairs = [pixels_to_chw(c, self.mean, self.std, self.jitter) for c in crops]
            return torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))
        images = torch.from_numpy(np.stack([c.image for c in crops]))
        masks = torch.from_numpy(np.stack([c.mask for c in crops]))
        params = torch.from_numpy(np.stack([np.concatenate([c.jitter, np.asarray(c.valid, np.float32)])
                                            for c in crops]).astype(np.float32))
        return CropBatch(images, masks, params)


def worker_init(_: int) -> None:
    """One OpenCV thread per loader worker: N workers x all-core OpenCV pools oversubscribe."""
    import cv2

    cv2.setNumThreads(1)


_FORK_GUARD: list[int] = []  # the parent's OpenCV thread count across one fork; [] = guard not installed


def fork_safe_opencv() -> None:
    """Make forking loader workers safe when the parent has used OpenCV's thread pool.

    A forked child inherits the pool's locks and condition variables as some thread held or waited
    on them, without the threads: its first pool call (``worker_init``'s ``setNumThreads``, or any
    parallel OpenCV op) could wait forever (reproduced: 18 of 20 forks hung after the parent ran a
    multithreaded resize). Before every fork of this process the pool is shrunk to one thread (no
    pool threads left to copy) and restored in the parent right after; children start single-
    threaded, which is what ``worker_init`` asks for. Installed once per process."""
    import os

    try:
        import cv2
    except ImportError:
        return
    if _FORK_GUARD or not hasattr(os, "register_at_fork"):
        return
    _FORK_GUARD.append(0)

    def before() -> None:
        _FORK_GUARD[0] = cv2.getNumThreads()
        if _FORK_GUARD[0] > 1:
            cv2.setNumThreads(1)

    def after_in_parent() -> None:
        if _FORK_GUARD[0] > 1:
            cv2.setNumThreads(_FORK_GUARD[0])

    os.register_at_fork(before=before, after_in_parent=after_in_parent)


def next_batch(iterator: Iterator):
    """``next(iterator)`` of a DataLoader; a dataset error raised in a loader worker (a bad mask
    value, a missing file) is raised again as itself with its own message: PyTorch pastes the
    worker's traceback into the message, which the CLI would print as the error."""
    try:
        return next(iterator)
    except DatasetError as exc:
        text = str(exc)
        if "Original Traceback" not in text:
            raise
        raise type(exc)(text.rsplit(f"{type(exc).__name__}: ", 1)[-1].strip()) from None


def without_worker_tracebacks(iterable):
    """The items of a DataLoader, through :func:`next_batch`."""
    iterator = iter(iterable)
    while True:
        try:
            yield next_batch(iterator)
        except StopIteration:
            return


class DeviceBatches:
    """Endless ``[(images, masks), ...]`` (one pair per loader) on ``device``.

    On CUDA, :meth:`prefetch` starts the next batches' host-to-device copies on a side stream;
    call it right after a step's work is queued so the copy overlaps that step. On CPU the
    loaders' batches are already finished (the pixel stage ran in the workers).
    """

    def __init__(self, loaders: list[Any], device: torch.device, stage: PixelStage) -> None:
        self.iterators: list[Iterator] = [iter(loader) for loader in loaders]
        self.device = device
        self.stage = stage
        self.cuda = device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(device) if self.cuda else None
        self.pending: list | None = None

    def prefetch(self) -> None:
        if self.pending is not None:
            return
        raw = [next_batch(it) for it in self.iterators]
        if not self.cuda:
            self.pending = raw
            return
        with torch.cuda.stream(self.copy_stream):
            self.pending = [CropBatch(*(t.to(self.device, non_blocking=True) for t in batch)) for batch in raw]

    def __iter__(self) -> DeviceBatches:
        return self

    def __next__(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self.prefetch()
        batches, self.pending = self.pending, None
        if not self.cuda:
            return batches
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.copy_stream)
        for batch in batches:
            for tensor in batch:
                tensor.record_stream(current)  # allocated on the copy stream, used on this one
        return [self.stage(batch) for batch in batches]

