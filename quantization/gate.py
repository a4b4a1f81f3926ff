"""The harness's accuracy gate on every int8 file, before a conversion reports success.

``edgeseg.validate.validate`` scores the new file and the float reference checkpoint on the same
labelled images; a file outside the gates raises :class:`AccuracyGateError` and is not kept.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgeseg.quantization.errors import AccuracyGateError
from edgeseg.quantization.options import QuantOptions


def gate_int8_file(path: Path, reference_model, options: QuantOptions):
    """Validate ``path`` against the float model; return the harness FileResult or raise.

    ``reference_model``: the float model (saved to a scratch checkpoint for the harness), unless
    ``options.reference`` names the float checkpoint to compare with (QAT compares with the model
    it started from, not with its own fine-tuned float weights).
    """
    from edgeseg.validate import CANNOT_RUN_HERE, PASSED, Gates, validate

    from edgeseg.checkpoint import read_checkpoint_header

    gates = Gates(max_miou_drop=options.max_miou_drop, min_agreement=options.min_agreement)
    with tempfile.TemporaryDirectory(prefix="edgeseg-gate-") as scratch:
        reference = options.reference or _save_reference(reference_model, Path(scratch))
        # Synthetic gate images are drawn at the model's size (no resize blur in the scores).
        size = tuple(read_checkpoint_header(reference)[1].input_size)
        run = validate(
            [path], reference, options.gate_spec, gates=gates, limit=options.gate_images,
            data_options={"size": size}, threads=1, samples=0,
        )
    result = run.files[0]
    if result.status == CANNOT_RUN_HERE:
        return result  # CoreML off macOS: the conversion report says numerics were not checked
    if result.status != PASSED:
        raise AccuracyGateError(
            f"the int8 file fails the accuracy gate ({result.status}): {result.reason}. Try "
            "`edgeseg qat` (fine-tune with fake quantization), more --calib-size, --keep-float for "
            "the layers the sensitivity report names, or loosen the gate (--max-miou-drop)",
            result,
        )
    return result


def _save_reference(model, scratch: Path) -> Path:
    from edgeseg.checkpoint import save_checkpoint

    if not hasattr(model, "build_config"):
        raise AccuracyGateError(
            "the int8 gate needs the float model as an edgeseg checkpoint; convert from a "
            ".safetensors checkpoint or a model built by edgeseg.models.create_model",
            None,
        )
    return save_checkpoint(model, scratch / "reference.safetensors")
