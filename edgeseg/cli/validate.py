"""``edgeseg validate``: converted files vs the PyTorch reference on labelled images, with gates
(or, without ``--reference`` and without PyTorch, against the labels alone).

Exit status: 0 every file passed; 1 a file failed validation or failed to load; 3 nothing
failed but some file cannot run on this machine (CoreML off macOS), so it is not verified.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from edgeseg.cli.options import DEVICE, JSON, print_json
from edgeseg.metadata import parse_size

EXIT_FAILED = 1
EXIT_NOT_VERIFIED = 3


def validate(
    models: List[str] = typer.Argument(..., help="Converted files (.onnx, .tflite, .xml, .mlpackage, .safetensors)."),  # noqa: UP006
    reference: Optional[str] = typer.Option(  # noqa: UP007
        None, "--reference", help="The edgeseg .safetensors checkpoint they came from (needs PyTorch). "
        "Left out: each file is scored against the labels only, without gates (no PyTorch needed).",
    ),
    data: List[str] = typer.Option(  # noqa: UP006
        ["synthetic:val"], "--data",
        help="[DOMAIN=]SPEC[:SPLIT]: synthetic:val, folder:PATH, cityscapes:PATH. Repeat for one per domain.",
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Images per domain (default: the whole split)."),  # noqa: UP007
    max_miou_drop: float = typer.Option(0.5, "--max-miou-drop", help="Largest allowed mIoU loss, in points."),
    min_agreement: Optional[float] = typer.Option(  # noqa: UP007
        None, "--min-agreement",
        help="Smallest allowed fraction of pixels equal to the reference (default per file "
        "precision: 0.999 fp32, 0.995 fp16, 0.90 int8).",
    ),
    per_class_gate: bool = typer.Option(False, "--per-class-gate", help="Also gate every class's IoU drop."),
    report: Optional[str] = typer.Option(None, "--report", help="Folder for report.json/.md/.html."),  # noqa: UP007
    size: Optional[str] = typer.Option(None, "--size", help="Synthetic data only: image HxW (default 256x512)."),  # noqa: UP007
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per backend."),  # noqa: UP007
    bench: bool = typer.Option(False, "--bench", help="Also time every file (for the accuracy-vs-latency plot)."),
    runs: int = typer.Option(20, "--runs", help="With --bench: timed runs per file."),
    warmup: int = typer.Option(3, "--warmup", help="With --bench: untimed warm-up runs per file."),
    device: Optional[str] = DEVICE,  # noqa: UP007
    as_json: bool = JSON,
) -> None:
    """Score each file and the reference on the same images; fail if a file breaks a gate.

    Without --reference (no PyTorch needed): each file is scored against the labels only, no gate.
    """
    from edgeseg.validate import Gates
    from edgeseg.validate import validate as run_validation
    from edgeseg.validate.report import accuracy_markdown, latency_markdown, report_dict, write_report

    gates = Gates(max_miou_drop, min_agreement, per_class_gate)
    options = {"size": parse_size(size)} if size else None
    say = lambda text: typer.echo(text, err=True)  # noqa: E731
    run = run_validation(
        models, reference, data, gates=gates, limit=limit, data_options=options, threads=threads, progress=say,
        device=device,
    )
    timing = None
    if bench:
        from edgeseg.validate.bench import bench as run_bench

        timing = run_bench(models, threads=threads, warmup=warmup, runs=runs, progress=say, device=device)
    if report:
        files = write_report(report, validation=run, bench=timing)
    if as_json:
        print_json(report_dict(run, timing))
    else:
        typer.echo("\n".join(accuracy_markdown(run) + (latency_markdown(timing) if timing else [])))
    if report:
        typer.echo(f"report: {files.html} ({files.json.name}, {files.markdown.name})", err=as_json)
    if run.failed:
        typer.echo(f"FAILED: {', '.join(f.name for f in run.failed)}", err=True)
        raise typer.Exit(EXIT_FAILED)
    if not run.passed:
        typer.echo("NOT VERIFIED: some files cannot run on this machine (see their rows)", err=True)
        raise typer.Exit(EXIT_NOT_VERIFIED)
