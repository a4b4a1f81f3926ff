"""``edgeseg models``: the zoo with parameters and FLOPs."""

from __future__ import annotations

import typer

from edgeseg.metadata import parse_size


def models(
    size: str = typer.Option("512x512", "--size", help="Input HxW for the FLOP count."),
    num_classes: int = typer.Option(19, "--num-classes", help="Output classes of each head."),
    name: list[str] = typer.Option(None, "--name", help="Only these models (repeatable)."),
) -> None:
    """List the model zoo: name, parameters and GFLOPs at a given input size."""
    from rich.console import Console
    from rich.table import Table

    from edgeseg.models import create_model, list_models
    from edgeseg.models.profile import measure_complexity

    height, width = parse_size(size)
    names = name or list_models()
    table = Table(title=f"edgeseg model zoo ({num_classes} classes, {height}x{width} input)")
    for col in ("model", "params (M)", "GFLOPs", "GMACs"):
        table.add_column(col, justify="left" if col == "model" else "right")
    from edgeseg.cli.options import ProgressLines

    progress = ProgressLines("models: measuring", every=0.0)
    for index, model_name in enumerate(names):
        progress(index + 1, len(names), model_name)
        model = create_model(model_name, num_classes=num_classes)
        model.check_input_size(height, width)
        c = measure_complexity(model, height, width)
        table.add_row(model_name, f"{c.params / 1e6:.3f}", f"{c.gflops:.2f}", f"{c.gmacs:.2f}")
    Console().print(table)
