"""``edgeseg bench``: latency of model files, measured interleaved (round robin).

Exit status: 0 every file was measured; 1 a file failed to load or cannot run on this machine.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from edgeseg.cli.options import DEVICE, JSON, print_json
from edgeseg.metadata import parse_size


def bench(
    models: List[str] = typer.Argument(..., help="Model files (.onnx, .tflite, .xml, .mlpackage, .safetensors)."),  # noqa: UP006
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per backend (default: the backend's)."),  # noqa: UP007
    warmup: int = typer.Option(5, "--warmup", help="Untimed warm-up runs per file."),
    runs: int = typer.Option(50, "--runs", help="Timed runs per file."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW of the timed image (default: each file's input size)."),  # noqa: UP007
    image: Optional[str] = typer.Option(None, "--image", help="Time on this image instead of a random one."),  # noqa: UP007
    cold_start: bool = typer.Option(True, "--cold-start/--no-cold-start", help="Measure cold start and peak RSS in a fresh process per file."),
    report: Optional[str] = typer.Option(None, "--report", help="Folder for report.json/.md/.html."),  # noqa: UP007
    device: Optional[str] = DEVICE,  # noqa: UP007
    as_json: bool = JSON,
) -> None:
    """p50/p90/p99/mean of the model call and of the full predict, load time, throughput, peak RSS."""
    from edgeseg.validate.bench import MEASURED
    from edgeseg.validate.bench import bench as run_bench
    from edgeseg.validate.report import latency_markdown, write_report

    timing = run_bench(
        models, threads=threads, warmup=warmup, runs=runs,
        input_size=parse_size(input_size) if input_size else None, image=image, cold_start=cold_start,
        progress=lambda text: typer.echo(text, err=True), device=device,
    )
    if report:
        files = write_report(report, bench=timing)
    if as_json:
        print_json(timing.to_dict())
    else:
        typer.echo("\n".join(latency_markdown(timing)))
    if report:
        typer.echo(f"report: {files.html} ({files.json.name}, {files.markdown.name})", err=as_json)
    if any(r.status != MEASURED for r in timing.files):
        raise typer.Exit(1)
