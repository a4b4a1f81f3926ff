"""``build_dataset("kind:argument", split, **options)``: one entry point for every dataset.

Specs: ``synthetic`` (the ``day`` domain), ``synthetic:<domain>``, ``folder:PATH``,
``cityscapes:PATH``, ``bdd100k:PATH``, ``mapillary:PATH``, ``ade20k:PATH``.
Options are the loader's keyword arguments (synthetic: size, length, seed; file layouts:
on_bad_labels); an option the loader does not take is an error, not silently dropped.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from edgeseg.data.ade20k import load_ade20k
from edgeseg.data.base import SPLITS, SegmentationDataset
from edgeseg.data.bdd100k import load_bdd100k
from edgeseg.data.cityscapes import load_cityscapes
from edgeseg.data.errors import DatasetSpecError
from edgeseg.data.folder import load_folder
from edgeseg.data.mapillary import load_mapillary


def _synthetic(domain: str, split: str, **options: Any) -> SegmentationDataset:
    from edgeseg.data.synthetic import SyntheticDataset

    return SyntheticDataset(domain or "day", split, **options)


# kind -> (loader(argument, split, **options), what the argument is)
DATASET_KINDS: dict[str, tuple[Callable[..., SegmentationDataset], str]] = {
    "synthetic": (_synthetic, "a domain name (optional)"),
    "folder": (load_folder, "a dataset root folder"),
    "cityscapes": (load_cityscapes, "the Cityscapes root folder"),
    "bdd100k": (load_bdd100k, "the BDD100K (bdd100k/) root folder"),
    "mapillary": (load_mapillary, "the Mapillary Vistas root folder"),
    "ade20k": (load_ade20k, "the ADEChallengeData2016 root folder"),
}
_SYNTHETIC_OPTIONS = ("size", "length", "seed")


def build_dataset(spec: str, split: str = "train", **options: Any) -> SegmentationDataset:
    """The dataset named by ``spec`` for ``split`` (train / val / test)."""
    kind, _, argument = spec.partition(":")
    if kind not in DATASET_KINDS:
        known = ", ".join(f"{k}:{'<domain>' if k == 'synthetic' else 'PATH'}" for k in DATASET_KINDS)
        raise DatasetSpecError(f"unknown dataset spec {spec!r}; use one of: synthetic, {known}")
    if split not in SPLITS:
        raise DatasetSpecError(f"unknown split {split!r}; choose one of {SPLITS}")
    loader, argument_doc = DATASET_KINDS[kind]
    if kind != "synthetic" and not argument:
        raise DatasetSpecError(f"{kind!r} needs {argument_doc}: write '{kind}:/path/to/{kind}'")
    allowed = _SYNTHETIC_OPTIONS if kind == "synthetic" else tuple(inspect.signature(loader).parameters)[2:]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DatasetSpecError(f"{kind} datasets take the options {list(allowed)}, not {unknown}")
    return loader(argument, split, **options)
