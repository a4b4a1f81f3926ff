"""``edgeseg convert``: a checkpoint -> a verified ONNX / TFLite / CoreML / OpenVINO file."""

from __future__ import annotations

from typing import Optional

import typer

from edgeseg.metadata import parse_size
from edgeseg.errors import ConfigError
from edgeseg.runtime.formats import by_suffix, target_names
from edgeseg.cli.qat import (
    ACCURACY_CONTROL, CALIB_SIZE, CALIBRATION, COREML_MODE, GATE_IMAGES, IO, KEEP_FLOAT, MAX_MIOU_DROP, MIN_AGREEMENT,
    quant_options,
)


def convert(
    ctx: typer.Context,
    checkpoint: str = typer.Argument(..., help="An edgeseg .safetensors checkpoint."),
    target: str = typer.Option(..., "--target", help=f"{target_names()}."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or int8 (calibrated, accuracy-gated)."),
    input_size: Optional[str] = typer.Option(  # noqa: UP007 (typer needs Optional)
        None, "--input-size", help="Fixed input HxW (default: the checkpoint's input size)."
    ),
    domain: Optional[str] = typer.Option(  # noqa: UP007
        None, "--domain", help="Multi-domain models: one domain's file, or 'all' for one file per "
        "domain. Left out: one file with an output per domain."
    ),
    layout: Optional[str] = typer.Option(  # noqa: UP007
        None, "--layout", help="Image input layout: nchw or nhwc (default: nhwc for tflite, nchw otherwise)."
    ),
    include_preprocess: Optional[bool] = typer.Option(  # noqa: UP007
        None, "--include-preprocess/--no-include-preprocess",
        help="The file takes uint8 RGB 0..255 and normalizes inside (default: yes for tflite, no otherwise).",
    ),
    argmax: bool = typer.Option(False, "--argmax", help="Output the class mask instead of logits."),
    output_stride: int = typer.Option(
        1, "--output-stride", help="N > 1: the file outputs logits at 1/N of the input (the head's own "
        "resolution, e.g. 8 for LR-ASPP, 4 for SegFormer: no final upsample in the graph); the "
        "runtime upsamples once, to each image's size.",
    ),
    coreml_input: Optional[str] = typer.Option(  # noqa: UP007
        None, "--coreml-input", help="CoreML only: image (an ImageType Vision feeds camera frames; the "
        "default) or tensor (a float32 MultiArray)."
    ),
    out: Optional[str] = typer.Option(  # noqa: UP007
        None, "--out", help="Output path (default: beside the checkpoint)."
    ),
    calibration: str = CALIBRATION,
    calib_size: int = CALIB_SIZE,
    io: str = IO,
    keep_float: Optional[list[str]] = KEEP_FLOAT,  # noqa: UP007
    accuracy_control: bool = ACCURACY_CONTROL,
    coreml_mode: str = COREML_MODE,
    max_miou_drop: float = MAX_MIOU_DROP,
    min_agreement: float = MIN_AGREEMENT,
    gate_images: int = GATE_IMAGES,
) -> None:
    """Convert a checkpoint for a target, run the new file against PyTorch, keep it if it matches."""
    from edgeseg.converters import convert as run_convert

    refuse_int8_options(ctx, precision)
    if out:
        check_output_file(out)
    from edgeseg.quiet import native_output_captured, say

    # The converters' libraries print C++ logs no Python switch reaches: held back (shown with
    # --verbose, or if the conversion fails); the stages go to the terminal as they start.
    with native_output_captured():
        result = run_convert(
            checkpoint,
            target,
            precision=precision,
            input_size=parse_size(input_size) if input_size else None,
            layout=layout,
            include_preprocess=include_preprocess,
            argmax=argmax,
            domain=domain,
            out=out,
            coreml_input=coreml_input,
            output_stride=output_stride,
            quant=quant_options(calibration, calib_size, io, keep_float, accuracy_control, coreml_mode,
                                max_miou_drop, gate_images, min_agreement) if precision == "int8" else None,
            progress=say,
        )
    for converted in result.files:
        names = ", ".join(str(p) for p in (converted.path, *converted.companions))
        typer.echo(f"wrote {names}")
        typer.echo(f"  {converted.report.summary()}")


# Options that only mean something to an int8 conversion (calibration, quantizer, accuracy gate).
_INT8_ONLY = ("calibration", "calib_size", "io", "keep_float", "accuracy_control", "coreml_mode",
              "max_miou_drop", "min_agreement", "gate_images")


def refuse_int8_options(ctx: typer.Context, precision: str) -> None:
    """Refuse int8-only flags given at fp32/fp16: silently writing a float file would hide that
    the flag did nothing."""
    if precision == "int8":
        return
    given = [p.opts[0] for p in ctx.command.params if p.name in _INT8_ONLY
             and getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") in ("COMMANDLINE", "ENVIRONMENT")]
    if given:
        raise ConfigError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --precision int8 only "
            f"(calibration, quantization and its accuracy gate); a {precision} conversion would ignore "
            f"{'it' if len(given) == 1 else 'them'}. Leave {'it' if len(given) == 1 else 'them'} out, "
            "or add --precision int8"
        )


def check_output_file(out: str) -> None:
    """Before minutes of conversion: the --out folder can be written and --out is not a folder
    (a .mlpackage is one, and is replaced whole)."""
    from pathlib import Path

    from edgeseg.fileio import OutputPathError, ensure_folder

    path = Path(out)
    fmt = by_suffix(path.suffix)
    if path.is_dir() and not (fmt and fmt.is_dir):
        raise OutputPathError(f"--out {path} is an existing folder; give a file path such as {path / 'model.onnx'}")
    ensure_folder(path.parent)
