"""The harness's accuracy gate on every int8 file, before a conversion reports success.

Labelled gate images: ``edgeseg.validate.validate`` scores the new file and the float reference
checkpoint on the same images (mIoU drop and pixel agreement). Unlabelled images (``images:PATH``,
``folder:PATH`` without masks): there is no mIoU to score, so the int8 file is compared with the
float model on held-out images: pixel agreement, and every class the float model predicts must
keep most of its pixels (a class int8 wipes out hardly moves the overall agreement). A file
outside the gates raises :class:`AccuracyGateError` and is not kept; the :class:`GateReport` of a
kept file says which gate ran and what it measured.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.quantization.errors import AccuracyGateError
from edgeseg.quantization.options import QuantOptions

# Unlabelled gate: classes the float model gives at least this share of the held-out pixels are
# checked, and int8 must give each of them at least MIN_CLASS_KEPT of the float model's pixels.
MIN_CLASS_SHARE = 0.01
MIN_CLASS_KEPT = 0.5


@dataclass
class GateReport:
    """What the int8 gate measured on a kept file (mIoU in points, shares as fractions)."""

    data: str  # the gate images' spec
    labelled: bool  # True: mIoU gate on labelled images; False: int8 vs float on unlabelled ones
    images: int = 0
    ran: bool = True  # False where the file cannot run here (CoreML off macOS)
    note: str = ""
    float_miou: dict[str | None, float] = field(default_factory=dict)  # domain -> mIoU points
    int8_miou: dict[str | None, float] = field(default_factory=dict)
    agreement: float | None = None  # fraction of pixels whose class equals the float model's
    class_share: dict[str, tuple[float, float]] = field(default_factory=dict)  # class -> (float, int8) share
    class_kept: dict[str, float] = field(default_factory=dict)  # class -> fraction of float's pixels int8 keeps
    file: object = None  # labelled: the harness FileResult

    def summary(self) -> str:
        if not self.ran:
            return f"int8 gate not run here ({self.note})"
        if self.labelled:
            scores = ", ".join(
                (f"{d}: " if d else "") + f"float {self.float_miou[d]:.2f} -> int8 {self.int8_miou[d]:.2f}"
                for d in self.float_miou
            )
            agreement = f", pixel agreement {self.agreement:.2%}" if self.agreement is not None else ""
            return f"int8 gate on {self.images} labelled images of {self.data}: mIoU {scores}{agreement}; passed"
        shares = ", ".join(f"{c} {f:.1%}/{q:.1%}" for c, (f, q) in self.class_share.items() if f or q)
        least = min(self.class_kept.items(), key=lambda kv: kv[1], default=None)
        kept = f"; least kept class {least[0]} {least[1]:.1%}" if least else ""
        return (
            f"int8 gate on {self.images} held-out unlabelled images of {self.data} (no masks, so int8 is "
            f"compared with float instead of mIoU): pixel agreement {self.agreement:.2%}; class share "
            f"float/int8: {shares}{kept}; passed"
        )


def gate_int8_file(path: Path, reference_model, options: QuantOptions,
                   input_size: tuple[int, int] | None = None) -> GateReport:
    """Validate ``path`` against the float model; return what the gate measured, or raise.

    ``reference_model``: the float model (saved to a scratch checkpoint for the harness), unless
    ``options.reference`` names the float checkpoint to compare with (QAT compares with the model
    it started from, not with its own fine-tuned float weights). ``input_size``: the file's
    (default: the reference's). The gate images are drawn at it and the float model runs at it, so
    int8 is compared with float on the same input: a file converted at another size than the
    model was trained at would otherwise be compared with the model run at its own size, on images
    the file upsamples (LR-ASPP-S trained at 128x256, int8 at 512x512: 41% "agreement", from the
    scale change alone).
    """
    from edgeseg.validate import CANNOT_RUN_HERE, PASSED, Gates, validate

    from edgeseg.checkpoint import read_checkpoint_header

    gates = Gates(max_miou_drop=options.max_miou_drop, min_agreement=options.min_agreement)
    with tempfile.TemporaryDirectory(prefix="edgeseg-gate-") as scratch:
        reference = options.reference or _save_reference(reference_model, Path(scratch))
        reference = _at_input_size(Path(reference), input_size, Path(scratch))
        if not options.labelled:
            return _agreement_gate(path, reference, options)
        # Synthetic gate images are drawn at the file's size (no resize blur in the scores).
        size = tuple(read_checkpoint_header(reference)[1].input_size)
        run = validate(
            [path], reference, options.gate_spec, gates=gates, limit=options.gate_images,
            data_options={"size": size}, threads=1, samples=0,
        )
    result = run.files[0]
    report = GateReport(options.gate_spec, labelled=True, file=result)
    if result.status == CANNOT_RUN_HERE:
        # CoreML off macOS: the conversion report says numerics were not checked
        report.ran, report.note = False, result.reason
        return report
    if result.status != PASSED:
        raise AccuracyGateError(
            f"the int8 file fails the accuracy gate ({result.status}): {result.reason}. " + _REMEDY
            + " (--max-miou-drop, --min-agreement)",
            result,
        )
    for d in result.domains:
        report.images = max(report.images, d.images)
        report.float_miou[d.domain] = 100.0 * d.reference.miou
        report.int8_miou[d.domain] = 100.0 * d.scores.miou
    agreements = [d.agreement for d in result.domains if d.agreement is not None]
    report.agreement = min(agreements) if agreements else None
    return report


_REMEDY = (
    "Try `edgeseg qat` (fine-tune with fake quantization), more --calib-size, --keep-float for the "
    "layers `edgeseg int8-report` names, or loosen the gate"
)


def _agreement_gate(path: Path, reference: Path, options: QuantOptions) -> GateReport:
    """Unlabelled gate images: the int8 file's masks against the float model's on held-out images."""
    from edgeseg.checkpoint import read_checkpoint_header
    from edgeseg.quantization.calibration import held_out_images
    from edgeseg.runtime import load
    from edgeseg.validate import CANNOT_RUN_HERE
    from edgeseg.validate.accuracy import file_domains, reference_domain
    from edgeseg.validate.files import open_file

    report = GateReport(options.gate_spec, labelled=False)
    opened = open_file(path, threads=1)
    if opened.session is None:
        if opened.status == CANNOT_RUN_HERE:
            report.ran, report.note = False, opened.reason
            return report
        raise AccuracyGateError(f"the int8 file fails the accuracy gate: it does not load ({opened.reason})", None)
    images = held_out_images(options.gate_spec, options.gate_images,
                             tuple(read_checkpoint_header(reference)[1].input_size))
    report.images = len(images)
    agree = pixels = 0
    domain_pixels: dict[str, int] = {}  # class key -> pixels of its domain's images
    float_counts: dict[str, int] = {}  # class key -> pixels float gives that class
    int8_counts: dict[str, int] = {}
    kept_counts: dict[str, int] = {}  # ... and int8 gives the same class
    with opened.session as session, load(reference, threads=1) as float_session:
        for domain in file_domains(session):
            classes = tuple(session.classes(domain))
            usable, float_domain = reference_domain(float_session, domain, classes)
            if not usable:
                continue
            prefix = f"{domain}/" if domain and len(session.domains) > 1 else ""
            for image in images:
                got = session.predict(image, domain=domain).astype(np.intp).ravel()
                want = float_session.predict(image, domain=float_domain).astype(np.intp).ravel()
                same = got == want
                agree += int(np.count_nonzero(same))
                pixels += want.size
                histograms = (np.bincount(want, minlength=len(classes)), np.bincount(got, minlength=len(classes)),
                              np.bincount(want[same], minlength=len(classes)))
                for k, name in enumerate(classes):
                    key = prefix + name
                    domain_pixels[key] = domain_pixels.get(key, 0) + want.size
                    for counts, histogram in zip((float_counts, int8_counts, kept_counts), histograms):
                        counts[key] = counts.get(key, 0) + int(histogram[k])
    if not pixels:
        raise AccuracyGateError(
            f"the int8 gate could not compare {path.name} with the float model: the reference predicts "
            "none of the file's domains; give the checkpoint the file was converted from", None)
    report.agreement = agree / pixels
    report.class_share = {c: (float_counts[c] / domain_pixels[c], int8_counts[c] / domain_pixels[c]) for c in float_counts}
    report.class_kept = {
        c: kept_counts[c] / float_counts[c] for c, (share, _) in report.class_share.items() if share >= MIN_CLASS_SHARE
    }
    problems = []
    if report.agreement < options.min_agreement:
        problems.append(f"int8 agrees with float on {report.agreement:.2%} of pixels (gate {options.min_agreement:.2%})")
    problems += [
        f"int8 keeps {kept:.1%} of the pixels float gives class {c!r} (gate {MIN_CLASS_KEPT:.0%})"
        for c, kept in report.class_kept.items() if kept < MIN_CLASS_KEPT
    ]
    if problems:
        raise AccuracyGateError(
            f"the int8 file fails the accuracy gate on {report.images} held-out unlabelled images of "
            f"{report.data} (compared with float): {'; '.join(problems)}. {_REMEDY} (--min-agreement)",
            None,
        )
    return report


def _save_reference(model, scratch: Path) -> Path:
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.quantization.layers import float_source

    model = float_source(model)
    if not hasattr(model, "build_config"):
        raise AccuracyGateError(
            "the int8 gate needs the float model as an edgeseg checkpoint; convert from a "
            ".safetensors checkpoint or a model built by edgeseg.models.create_model",
            None,
        )
    return save_checkpoint(model, scratch / "reference.safetensors")


def _at_input_size(reference: Path, size: tuple[int, int] | None, scratch: Path) -> Path:
    """``reference``, or a scratch copy of it that runs at ``size`` (its metadata's input size)."""
    from edgeseg.checkpoint import load_model, read_checkpoint_header, save_checkpoint

    if size is None or tuple(size) == tuple(read_checkpoint_header(reference)[1].input_size):
        return reference
    model = load_model(reference)
    model.metadata = model.metadata.replace(input_size=tuple(size))
    return save_checkpoint(model, scratch / f"reference_{size[0]}x{size[1]}.safetensors")
