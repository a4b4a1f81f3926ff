"""``edgeseg convert``: a checkpoint -> a verified ONNX / TFLite / CoreML / OpenVINO file."""

from __future__ import annotations

from typing import Optional

import typer

from edgeseg.cli.options import parse_size


def convert(
    checkpoint: str = typer.Argument(..., help="An edgeseg .safetensors checkpoint."),
    target: str = typer.Option(..., "--target", help="onnx, tflite, coreml or openvino."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16."),
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
    )
    for converted in result.files:
        names = ", ".join(str(p) for p in (converted.path, *converted.companions))
        typer.echo(f"wrote {names}")
        typer.echo(f"  {converted.report.summary()}")
