"""Per-domain data streams for training and evaluation.

Every training batch is a pure function of (seed, domain, step, rank): the sampler draws a fresh
permutation per domain epoch from a seeded generator, and each sample's augmentation gets a NumPy
generator seeded by (seed, domain, epoch, index). So a run resumed at step k sees exactly the batches the
uninterrupted run saw, whatever the number of loader workers.
"""

from __future__ import annotations

import contextlib

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgeseg.errors import ConfigError


@dataclass
class DomainData:
    """One dataset of the run: its label space and its train / validation sets."""

    spec: str  # the spec it was built from ("synthetic:night")
    name: str  # domain name: the dataset's name, the model head's key
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    train: Any  # a SegmentationDataset
    val: Any  # a SegmentationDataset (or None when the split does not exist)


def build_domains(specs: tuple[str, ...], *, train_split: str, val_split: str, options: dict[str, Any]) -> list[DomainData]:
    from edgeseg.data import build_dataset

    domains = []
    for spec in specs:
        train = build_dataset(spec, train_split, **options)
        if len(train) == 0:
            raise ConfigError(
                f"dataset {spec!r} has no {train_split!r} samples; check the path and split, "
                "or give data_options such as length for synthetic data"
            )
        val = build_dataset(spec, val_split, **options)
        domains.append(
            DomainData(spec, domain_name(train.name), tuple(train.classes), tuple(train.palette), train, val)
        )
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise ConfigError(f"datasets {list(specs)} share domain names {names}; each needs its own")
    return domains


def domain_name(dataset_name: str) -> str:
    """A head name from a dataset name: "synthetic:night" -> "synthetic_night" (heads and exported
    outputs are named by identifiers)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", dataset_name).strip("_")
    return name if name[:1].isalpha() else f"d_{name}"


def _mix_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from several parts (Python's hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode()) | (zlib.adler32(repr(parts[::-1]).encode()) << 32)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``(index, augmentation seed)``, from global step ``start_step`` on.

    Domain epoch ``e`` is a seeded permutation of the dataset; step ``s`` of this rank takes
    ``batch_size`` indices of it at offset ``(s * world_size + rank) * batch_size``, so ranks
    never share a sample within a step (what DistributedSampler does, per step).
    """

    def __init__(self, num_samples: int, *, batch_size: int, seed: int, domain: str,
                 start_step: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.domain = domain
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = num_samples // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"domain {domain!r} has {num_samples} training samples, fewer than one step needs "
                f"(batch_size {batch_size} x {world_size} processes); lower batch_size or add data"
            )

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        perm, perm_epoch = None, -1
        while True:
            epoch, slot = divmod(step, self.steps_per_epoch)
            if epoch != perm_epoch:
                gen = torch.Generator().manual_seed(_mix_seed(self.seed, self.domain, epoch))
                perm, perm_epoch = torch.randperm(self.num_samples, generator=gen).tolist(), epoch
            start = (slot * self.world_size + self.rank) * self.batch_size
            indices = perm[start:start + self.batch_size]
            yield [(i, _mix_seed(self.seed, self.domain, epoch, i)) for i in indices]
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number for its own bookkeeping
        return 2**62


class SeededItems(Dataset):
    """``transform(dataset[index], rng)`` with a NumPy generator seeded per item, so each
    augmented sample is reproducible and independent of which worker process made it."""

    def __init__(self, dataset: Any, transform: Any) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item
        return self.transform(self.dataset[index], np.random.default_rng(seed))


def train_loader(domain: DomainData, transform: Any, *, batch_size: int, seed: int, start_step: int,
                 workers: int, rank: int, world_size: int, pin_memory: bool,
                 finish_in_workers: bool = False, start_method: str | None = None) -> tuple[DataLoader, int]:
    """An endless loader of this rank's batches from ``start_step``, and the domain's steps per epoch.

    Workers send uint8 crops (:class:`~edgeseg.train.batches.CropBatch`) for the device's pixel
    stage; with ``finish_in_workers`` (CPU training) they finish them and send (float images,
    int64 masks). ``start_method`` (e.g. "forkserver") starts the workers without forking a
    process that holds threads a fork would copy mid-lock (JAX, which litert-torch imports).
    """
    from edgeseg.train.batches import CollateCrops, CropItems, fork_safe_opencv, worker_init

    if workers:
        fork_safe_opencv()
    sampler = StepBatchSampler(len(domain.train), batch_size=batch_size, seed=seed, domain=domain.name,
                               start_step=start_step, rank=rank, world_size=world_size)
    collate = (CollateCrops(transform.mean, transform.std, jitter=getattr(transform, "color_jitter", 0) > 0)
               if finish_in_workers else CollateCrops())
    loader = DataLoader(CropItems(domain.train, transform), batch_sampler=sampler, num_workers=workers,
                        collate_fn=collate, pin_memory=pin_memory,
                        persistent_workers=workers > 0, worker_init_fn=worker_init if workers else None,
                        prefetch_factor=4 if workers else None,
                        multiprocessing_context=start_method if workers else None)
    return loader, sampler.steps_per_epoch


class _Subset(Dataset):
    def __init__(self, dataset: Any, indices: list[int], transform: Any) -> None:
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Evaluation transforms draw nothing; a fixed generator keeps the call signature.
        return self.transform(self.dataset[self.indices[i]], np.random.default_rng(0))


def eval_loader(domain: DomainData, transform: Any, *, batch_size: int, limit: int | None,
                workers: int, rank: int, world_size: int) -> DataLoader:
    """This rank's share of the validation split: every sample scored exactly once overall
    (no padding duplicates, unlike DistributedSampler), so the all-reduced counts are exact."""
    total = len(domain.val) if limit is None else min(limit, len(domain.val))
    if total == 0:
        raise ConfigError(f"domain {domain.name!r} has no validation samples; evaluation needs some")
    indices = list(range(rank, total, world_size))
    if workers:
        from edgeseg.train.batches import fork_safe_opencv

        fork_safe_opencv()
    return DataLoader(_Subset(domain.val, indices, transform), batch_size=batch_size, num_workers=workers)


@contextlib.contextmanager
def keep_sigchld_handler():
    """Give the caller's SIGCHLD handler back after training. A DataLoader with worker processes
    installs PyTorch's handler process-wide and never removes it; it then runs on the exit of every
    child the caller starts later (a subprocess, a camera helper), long after training ended.
    PyTorch installs it once per process: its flag is cleared too, so the next training's loader
    installs it again and watches its own workers."""
    import signal
    import threading

    from torch.utils.data._utils import signal_handling

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGCHLD"):
        yield  # only the main thread may set handlers
        return
    before = signal.getsignal(signal.SIGCHLD)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGCHLD) is not before:
            signal.signal(signal.SIGCHLD, before if before is not None else signal.SIG_DFL)
            if hasattr(signal_handling, "_SIGCHLD_handler_set"):
                signal_handling._SIGCHLD_handler_set = False
