"""The ``edgeseg`` command line. Each command lives in its own module and imports heavy
libraries (torch, backends) inside the command, so ``edgeseg --help`` starts fast."""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from edgeseg import __version__

app = typer.Typer(
    name="edgeseg",
    help="Train, quantize, convert and validate lightweight segmentation models for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# command name -> "module:function" (one line per command; the module is imported on use).
COMMANDS: dict[str, str] = {
    "models": "edgeseg.cli.models:models",
    "predict": "edgeseg.cli.predict:predict",
    "convert": "edgeseg.cli.convert:convert",
    "import": "edgeseg.cli.import_:import_",
    "train": "edgeseg.cli.train:train",
    "qat": "edgeseg.cli.qat:qat",
    "int8-report": "edgeseg.cli.qat:int8_report",
    "validate": "edgeseg.cli.validate:validate",
    "bench": "edgeseg.cli.bench:bench",
    "demo": "edgeseg.cli.demo:demo",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP007 (typer needs Optional)
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """edgeseg: from a trained model to a verified int8 file on the device."""


def _register() -> None:
    for name, target in COMMANDS.items():
        module_name, func_name = target.split(":")
        module = importlib.import_module(module_name)
        app.command(name)(getattr(module, func_name))


_register()


def main() -> None:
    from edgeseg.errors import EdgesegError

    try:
        app()
    except EdgesegError as exc:
        # Errors we raise on purpose carry their fix; show it without a traceback.
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
