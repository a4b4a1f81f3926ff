"""The ``edgeseg`` command line. Each command lives in its own module; every module is imported
at start (typer reads each command's options from its signature), and imports the heavy
libraries (torch, converters, backends) inside the command, so ``edgeseg --help`` and the
runtime-only install (no torch) start fast."""

from __future__ import annotations

import functools
import importlib
from typing import Optional

import typer

from edgeseg import __version__
from edgeseg.errors import MissingDependencyError
from edgeseg.runtime.formats import targets

app = typer.Typer(
    name="edgeseg",
    help="Train, quantize, convert and validate lightweight segmentation models for edge devices.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

# command name -> "module:function" (one line per command; _register imports each module at start).
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
    "inspect": "edgeseg.cli.inspect:inspect",
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
    verbose: bool = typer.Option(
        False, "--verbose", "-v",
        help="Also show the warnings and logs of the libraries edgeseg uses (PyTorch, LiteRT, JAX, "
        "torchao, coremltools, NNCF, TensorFlow); they are silenced by default.",
    ),
) -> None:
    """edgeseg: from a trained model to a verified int8 file on the device."""
    from edgeseg.quiet import quiet_third_party

    quiet_third_party(verbose)


# Packages a command may import that the runtime-only install (edgeseg[cli,runtime-*]) lacks ->
# the extra that installs them.
OPTIONAL_PACKAGES = {
    "torch": "torch", "safetensors": "torch", "torchvision": "torch", "PIL": "torch",
    "onnx": "onnx", "onnxscript": "onnx", "onnxslim": "onnx", "litert_torch": "tflite",
    "coremltools": "coreml", "nncf": "openvino", "torchao": "qat", "matplotlib": "report",
}
# The extra to name when a command that needs PyTorch finds a package missing.
TORCH_COMMANDS = {"models": "torch", "train": "torch", "convert": "onnx", "import": "torch",
                  "qat": "qat", "int8-report": "torch"}


def _needs_packages(name: str, func):
    """``func`` with a missing optional package turned into a typed error naming the extra."""

    @functools.wraps(func)
    def command(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ModuleNotFoundError as exc:
            root = (exc.name or "").split(".")[0]
            if root not in OPTIONAL_PACKAGES:
                raise
            extra = TORCH_COMMANDS.get(name, OPTIONAL_PACKAGES[root])
            if name == "convert" and kwargs.get("target") in targets():
                extra = targets()[kwargs["target"]].converter_extra  # it brings torch too
            elif root != "torch" and name not in TORCH_COMMANDS:
                extra = OPTIONAL_PACKAGES[root]
            raise MissingDependencyError(
                f"`edgeseg {name}` needs {root!r}, which is not installed here; install it with "
                f'`pip install "edgeseg[{extra}]"`. Without PyTorch this install runs predict, bench, '
                "validate (without --reference), demo and inspect"
            ) from None

    return command


def _register() -> None:
    for name, target in COMMANDS.items():
        module_name, func_name = target.split(":")
        module = importlib.import_module(module_name)
        app.command(name)(_needs_packages(name, getattr(module, func_name)))


_register()


def main() -> None:
    from edgeseg.errors import EdgesegError

    try:
        # prog_name: "edgeseg" in usage lines and shell completion also under `python -m edgeseg`.
        app(prog_name="edgeseg")
    except EdgesegError as exc:
        # Errors we raise on purpose carry their fix; show it without a traceback.
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
