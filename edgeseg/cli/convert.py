"""``edgeseg convert``: a checkpoint -> a verified ONNX / TFLite / CoreML / OpenVINO file."""

from __future__ import annotations

from typing import Optional

import typer

from edgeseg.cli.options import parse_size
from edgeseg.cli.qat import (
    ACCURACY_CONTROL, CALIB_SIZE, CALIBRATION, COREML_MODE, GATE_IMAGES, IO, KEEP_FLOAT, MAX_MIOU_DROP, MIN_AGREEMENT,
    quant_options,
)


def convert(
    checkpoint: str = typer.Argument(..., help="An edgeseg .safetensors checkpoint."),
    target: str = typer.Option(..., "--target", help="onnx, tflite, coreml or openvino."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or int8 (calibrated, accuracy-gated)."),
    input_size: Optional[str] = typer.Option(  # noqa: UP007 (typer needs Optional)
        None, "--input-size", help="Fixed input HxW (default: the checkpoint's input size)."
    ),
    domain: Optional[str] = typer.Option(  # noqa: UP007
        None, "--domain", help="Multi-domain models: one domain's file, or 'all' for one file per "
        "domain. Left out: one file with an output per domain."
    ),
    layout: str = typer.Option("nchw", "--layout", help="Image input layout: nchw or nhwc."),
    include_preprocess: bool = typer.Option(
        False, "--include-preprocess", help="The file takes uint8 RGB 0..255 and normalizes inside."
    ),
    argmax: bool = typer.Option(False, "--argmax", help="Output the class mask instead of logits."),
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
        quant=quant_options(calibration, calib_size, io, keep_float, accuracy_control, coreml_mode,
                            max_miou_drop, gate_images, min_agreement) if precision == "int8" else None,
    )
    for converted in result.files:
        names = ", ".join(str(p) for p in (converted.path, *converted.companions))
        typer.echo(f"wrote {names}")
        typer.echo(f"  {converted.report.summary()}")
