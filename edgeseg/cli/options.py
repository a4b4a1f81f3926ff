"""Parsers shared by the CLI commands."""

from __future__ import annotations

import typer

# --device on predict, bench, validate and demo (edgeseg.runtime.load(device=...)).
DEVICE = typer.Option(
    None, "--device",
    help="Where the model runs: cpu (the default), auto (the best accelerator available; says which), "
    "an ONNX Runtime provider (cuda, cuda:1, tensorrt, coreml, qnn, openvino, ...), an OpenVINO device "
    "(gpu, gpu.1, npu), a LiteRT delegate (gpu, delegate:/path/libdelegate.so).",
)
# --json on predict, bench and validate: stdout is one JSON document and nothing else.
JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout (messages go to stderr).")


def say(text: str) -> None:
    """A message for the person at the terminal: stderr, so stdout stays the command's result."""
    typer.echo(text, err=True)


class ProgressLines:
    """Progress of a long command as plain lines on stderr (readable in a terminal and in a log
    file alike): at most one line per ``every`` seconds, and always the last step."""

    def __init__(self, what: str, every: float = 2.0):
        import time

        self.what, self.every = what, every
        self.start, self.last = time.perf_counter(), float("-inf")

    def __call__(self, done: int, total: int, label: str = "") -> None:
        import time

        now = time.perf_counter()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        say(f"{self.what} {done}/{total}{f' ({label})' if label else ''}, {now - self.start:.0f} s")


def print_json(data) -> None:
    """``data`` as one JSON document on stdout (NaN/inf, which JSON lacks, as null)."""
    import json
    import math

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    typer.echo(json.dumps(clean(data), indent=2, allow_nan=False, default=str))

