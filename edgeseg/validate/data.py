"""Which images score which domain: ``--data`` specs resolved to datasets, classes checked.

A spec is a ``build_dataset`` spec with an optional split at the end (default ``val``):
``synthetic:val``, ``synthetic:night:val``, ``folder:/data/street``, ``cityscapes:/data/cs:val``.
Multi-domain files take one spec per domain as ``DOMAIN=SPEC``; a bare ``synthetic`` spec serves
every domain named like a synthetic domain (``night`` or ``synthetic_night`` for ``synthetic:night``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeseg.data import SegmentationDataset, build_dataset
from edgeseg.data.base import SPLITS
from edgeseg.data.errors import DatasetError
from edgeseg.validate.errors import DataMismatchError, ValidationSetupError

DEFAULT_SPLIT = "val"


@dataclass(frozen=True)
class DataSpec:
    """One ``--data`` value, parsed."""

    domain: str | None  # the domain it scores; None = whichever domain it fits
    spec: str  # what build_dataset takes ("synthetic", "synthetic:night", "folder:/x")
    split: str

    @property
    def text(self) -> str:
        prefix = f"{self.domain}=" if self.domain else ""
        return f"{prefix}{self.spec}:{self.split}"


def parse_data_spec(text: str) -> DataSpec:
    """``[DOMAIN=]SPEC[:SPLIT]`` -> :class:`DataSpec` (split defaults to ``val``)."""
    domain, sep, rest = text.partition("=")
    if not sep:
        domain, rest = None, text
    elif not domain.isidentifier():
        raise ValidationSetupError(
            f"--data {text!r}: {domain!r} is not a domain name; write DOMAIN=SPEC, e.g. night=synthetic:night:val"
        )
    spec, split = rest, DEFAULT_SPLIT
    head, colon, last = rest.rpartition(":")
    if colon and last in SPLITS:
        spec, split = head, last
    if not spec:
        raise ValidationSetupError(f"--data {text!r} names no dataset; use synthetic:val, folder:PATH or cityscapes:PATH")
    return DataSpec(domain, spec, split)


class DataResolver:
    """Builds (once) and checks the dataset that scores each domain."""

    def __init__(self, specs: list[DataSpec], options: dict[str, Any] | None = None):
        if not specs:
            raise ValidationSetupError("no --data given; use synthetic:val, folder:PATH or cityscapes:PATH")
        self.specs = specs
        self.options = dict(options or {})
        self._cache: dict[tuple[str, str], SegmentationDataset] = {}

    def dataset_for(self, domain: str | None, classes: tuple[str, ...]) -> tuple[DataSpec, SegmentationDataset]:
        spec = self._spec_for(domain)
        key = (spec.spec, spec.split)
        if key not in self._cache:
            options = self.options if spec.spec.split(":")[0] == "synthetic" else {}
            try:
                self._cache[key] = build_dataset(spec.spec, spec.split, **options)
            except DatasetError as exc:
                raise ValidationSetupError(f"--data {spec.text}: {exc}") from exc
        dataset = self._cache[key]
        if tuple(dataset.classes) != tuple(classes):
            where = f"domain {domain!r}" if domain else "the model"
            raise DataMismatchError(
                f"--data {spec.text} labels the classes {list(dataset.classes)}, but {where} predicts "
                f"{list(classes)}; give the dataset the model was trained for"
                + (f" (as {domain}=SPEC)" if domain else "")
            )
        return spec, dataset

    def _spec_for(self, domain: str | None) -> DataSpec:
        for spec in self.specs:
            if spec.domain is not None and spec.domain == domain:
                return spec
        generic = [s for s in self.specs if s.domain is None]
        if not generic:
            named = [s.domain for s in self.specs]
            raise ValidationSetupError(
                f"no --data for domain {domain!r} (given for {named}); add --data {domain or 'DOMAIN'}=SPEC"
            )
        spec = generic[0]
        if domain is not None and spec.spec == "synthetic":
            synthetic = synthetic_domain(domain)
            if synthetic is not None:
                return DataSpec(domain, f"synthetic:{synthetic}", spec.split)
        return spec


def synthetic_domain(domain: str) -> str | None:
    """The synthetic domain a head is named after: ``night``, or ``synthetic_night`` (the name
    training gives the head of the dataset ``synthetic:night``)."""
    from edgeseg.data.synthetic import SYNTHETIC_DOMAINS

    name = domain.removeprefix("synthetic_")
    return name if name in SYNTHETIC_DOMAINS else None
