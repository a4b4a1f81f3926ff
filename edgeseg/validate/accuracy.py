"""``validate``: every file and the PyTorch reference on the same images, through the same
runtime pre/post-processing, scored with the one mIoU implementation (ConfusionMatrix).

Images stream once: each image runs through the reference and then every file, so memory stays
flat however many images or files there are, and a file is always compared on identical pixels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.metrics import ConfusionMatrix
from edgeseg.validate.data import DataResolver, DataSpec, parse_data_spec
from edgeseg.validate.errors import ValidationSetupError
from edgeseg.validate.files import backend_of, file_size, open_file
from edgeseg.validate.gates import FAILED_VALIDATION, PASSED, Gates
from edgeseg.validate.results import DomainResult, FileResult, Sample, ValidationRun


#: Seconds between two "images scored" progress lines of a long validation.
PROGRESS_SECONDS = 10.0


@dataclass
class _Tally:
    """One file on one domain, accumulated image by image."""

    result: FileResult
    session: Any
    domain: str | None  # the head scored: predict(domain=...)
    matrix: ConfusionMatrix
    wants_logits: bool
    agree: int = 0
    pixels: int = 0
    err_max: float = 0.0
    err_sum: float = 0.0
    err_count: int = 0
    error: str = ""  # set when predict raised: the file is then out of this domain's loop

    def add(self, image: np.ndarray, label: np.ndarray, ref_mask: np.ndarray | None, ref_logits: np.ndarray | None) -> np.ndarray:
        mask = self.session.predict(image, domain=self.domain)
        self.matrix.update(mask, label)
        if ref_mask is not None:
            self.agree += int(np.count_nonzero(mask == ref_mask))
            self.pixels += mask.size
        if self.wants_logits and ref_logits is not None:
            diff = np.abs(self.session.predict(image, logits=True, domain=self.domain) - ref_logits)
            self.err_max = max(self.err_max, float(diff.max()))
            self.err_sum += float(diff.sum(dtype=np.float64))
            self.err_count += diff.size
        return mask


def file_domains(session) -> list[str | None]:
    """The heads a file has: one per output, or its one domain (None for a single-domain model)."""
    return list(session.domains) or [session.metadata.domain]


def reference_domain(reference, domain: str | None, classes: tuple[str, ...]) -> tuple[bool, str | None]:
    """(whether the reference can predict ``domain``, the ``domain=`` to pass to its predict)."""
    if reference.domains:
        return domain in reference.domains, domain
    meta = reference.metadata
    if tuple(reference.classes()) != tuple(classes):
        return False, None
    if domain == meta.domain:
        return True, domain
    # A multi-domain checkpoint on the torch backend predicts its first (default) head only.
    return (domain is None or (bool(meta.domains) and meta.domains[0].name == domain)), None


def validate(
    files: Sequence[str | os.PathLike[str]],
    reference: str | os.PathLike[str] | None,
    data: str | Sequence[str] = "synthetic:val",
    *,
    gates: Gates = Gates(),
    limit: int | None = None,
    data_options: dict[str, Any] | None = None,
    threads: int | None = None,
    backend: str | None = None,
    samples: int = 2,
    progress: Callable[[str], None] | None = None,
    device: str | None = None,
) -> ValidationRun:
    """Score each file and the reference checkpoint on the same labelled images; apply the gates.

    ``data``: one spec or several (see :mod:`edgeseg.validate.data`). ``limit``: images per
    domain (None = the whole split). ``data_options``: synthetic dataset options (size, length,
    seed). ``backend``: force the runtime backend of every file (for files whose name does not
    say their format, e.g. a temporary file); the reference always goes by its suffix.
    ``samples``: images per domain kept for the report's overlays. ``device``: where the files
    run (``edgeseg.runtime.load(device=...)``); the reference runs on the CPU.

    ``reference=None`` scores the files against the labels alone (mIoU, pixel accuracy), with no
    PyTorch and no gate: the reference-based gates (mIoU drop, agreement) need the checkpoint.
    """
    from edgeseg.errors import EdgesegError
    from edgeseg.runtime import load

    if limit is not None and limit < 1:
        raise ValidationSetupError(f"limit={limit}: give at least 1 image, or leave it out for the whole split")
    if not files:
        raise ValidationSetupError("no model files given; pass one or more converted files to validate")
    specs = [parse_data_spec(d) for d in ([data] if isinstance(data, str) else data)]
    resolver = DataResolver(specs, data_options)
    say = progress or (lambda _: None)
    ref_session = None
    if reference is not None:
        try:
            ref_session = load(reference, threads=threads)
        except EdgesegError as exc:
            raise ValidationSetupError(f"the reference {reference} cannot be loaded: {exc}") from exc

    results, tallies_by_domain = [], {}
    for path in files:
        opened = open_file(path, threads, backend, device)
        result = FileResult(
            str(path), backend_of(Path(path), backend),
            opened.session.precision if opened.session else None,
            file_size(Path(path)), opened.status or PASSED, opened.reason,
        )
        results.append(result)
        if opened.session is None:
            continue
        result.device, result.device_note = opened.session.device, opened.session.device_note
        for domain in file_domains(opened.session):
            tally = _Tally(
                result, opened.session, domain, ConfusionMatrix(len(opened.session.classes(domain))),
                wants_logits=not opened.session.metadata.argmax,
            )
            tallies_by_domain.setdefault(domain, []).append(tally)

    run = ValidationRun(str(reference) if reference is not None else None, [s.text for s in specs], limit, gates, {}, results)
    for domain, tallies in tallies_by_domain.items():
        _score_domain(run, domain, tallies, ref_session, resolver, limit, samples, say)
    for result in results:
        if result.status == PASSED and any(d.gate_failures for d in result.domains):
            result.status, result.reason = FAILED_VALIDATION, _reason(result.domains)
    return run


def _reason(domains: list[DomainResult]) -> str:
    """Gate failures of every domain, one clause per distinct failure: "a, b: <why>"."""
    by_failure: dict[str, list[str]] = {}
    for d in domains:
        for failure in d.gate_failures:
            by_failure.setdefault(failure, []).append(d.domain or "")
    return "; ".join(
        f"{', '.join(names)}: {failure}" if any(names) else failure for failure, names in by_failure.items()
    )


def _score_domain(run, domain, tallies, ref_session, resolver, limit, samples, say) -> None:
    first = tallies[0].session
    classes = tuple(first.classes(domain))
    spec, dataset = resolver.dataset_for(domain, classes)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    has_reference, ref_domain = (
        reference_domain(ref_session, domain, classes) if ref_session is not None else (False, None)
    )
    ref_matrix = ConfusionMatrix(len(classes))
    any_logits = has_reference and any(t.wants_logits for t in tallies)
    kept = run.samples.setdefault(domain, [])
    for tally in tallies:
        if tuple(tally.session.classes(domain)) != classes:
            tally.error = (
                f"predicts the classes {list(tally.session.classes(domain))}, not the "
                f"{list(classes)} of {spec.text}; validate files of one model together"
            )
    say(f"scoring {len(tallies)} file(s) on {count} images of {spec.text}" + (f" (domain {domain})" if domain else ""))
    started = last_said = time.perf_counter()
    for index in range(count):
        if time.perf_counter() - last_said >= PROGRESS_SECONDS:
            last_said = time.perf_counter()
            say(f"  {index}/{count} images scored, {last_said - started:.0f} s")
        sample = dataset[index]
        ref_mask = ref_logits = None
        if has_reference:
            ref_mask = ref_session.predict(sample.image, domain=ref_domain)
            ref_matrix.update(ref_mask, sample.mask)
            if any_logits:
                ref_logits = ref_session.predict(sample.image, logits=True, domain=ref_domain)
        keep = index < samples
        if keep:
            kept.append(Sample(sample.name, sample.image, sample.mask, ref_mask, first.palette(domain)))
        for tally in tallies:
            if tally.error:
                continue
            try:
                mask = tally.add(sample.image, sample.mask, ref_mask, ref_logits)
            except Exception as exc:  # a file that loads but breaks on real images fails, others go on
                tally.error = f"predict failed on {sample.name}: {type(exc).__name__}: {exc}"
                continue
            if keep:
                kept[-1].files[tally.result.name] = mask
    ref_scores = ref_matrix.scores(classes) if has_reference else None
    if ref_scores is not None:
        run.reference[domain] = DomainResult(domain, spec.text, count, ref_scores, ref_scores, 1.0, 0.0, 0.0)
    for tally in tallies:
        tally.result.domains.append(_domain_result(
            tally, domain, spec, count, classes, ref_scores, run.gates, reference_missing=ref_session is None))


def _domain_result(tally: _Tally, domain, spec: DataSpec, count, classes, ref_scores, gates: Gates,
                   reference_missing: bool = False) -> DomainResult:
    has_logits = tally.wants_logits and tally.err_count > 0
    result = DomainResult(
        domain, spec.text, count, tally.matrix.scores(classes), ref_scores,
        tally.agree / tally.pixels if tally.pixels else None,
        tally.err_max if has_logits else None,
        tally.err_sum / tally.err_count if has_logits else None,
    )
    if tally.error:
        result.gate_failures.append(tally.error)
    elif reference_missing:
        pass  # scored against the labels only: no gate applies
    elif ref_scores is None and domain is None:
        result.gate_failures.append(
            f"the reference predicts other classes than this file's {list(classes)}; give the "
            "checkpoint this file was converted from as the reference"
        )
    elif ref_scores is None:
        result.gate_failures.append(
            "no PyTorch reference for this domain: the reference checkpoint cannot predict it through "
            "edgeseg.runtime, so the file cannot be compared on it"
        )
    else:
        result.gate_failures.extend(
            gates.failures(result.miou_drop, result.agreement, result.class_deltas, tally.result.precision)
        )
    return result
