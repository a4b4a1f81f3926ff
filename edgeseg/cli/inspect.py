"""``edgeseg inspect FILE``: what a model file declares, whoever wrote it.

Inputs and outputs as the backend reads them, every metadata block found (edgeseg's own entry,
the standard TFLite Metadata and its packed files, OpenVINO Model API ``model_info``, ONNX
metadata_props, CoreML user-defined metadata), the checksum's state, and the metadata the runtime
would run the file with. Torch-free: it runs on the runtime-only install.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import typer

from edgeseg.cli.options import JSON, print_json


def inspect(
    file: Path = typer.Argument(..., help="Model file: .onnx, .tflite, .xml (+.bin), .mlpackage."),
    backend: str = typer.Option(None, "--backend", help="Force a backend (as in predict)."),
    as_json: bool = JSON,
) -> None:
    """Print a model file's inputs, outputs, metadata blocks and checksum state."""
    report = inspect_file(file, backend)
    if as_json:
        print_json(report)
        return
    typer.echo(render(report))


def inspect_file(path: Path, backend: str | None = None) -> dict:
    """The inspection report of ``path`` as a JSON-ready dict."""
    from edgeseg.runtime import formats, loader

    path = Path(path)
    name = loader._backend_name(path, backend)
    fmt = formats.by_backend(name)
    loader._check_file(path, fmt)
    backend_class = loader._backend_class(name)
    checksum = _checksum_state(path, fmt)
    backend_obj = backend_class(path)  # opened directly: a damaged file is still described
    report: dict = {
        "file": str(path),
        "backend": backend_obj.name,
        "checksum": checksum,
        "inputs": [_tensor(backend_obj.input)],
        "outputs": [_tensor(info) for info in backend_obj.outputs.values()],
        "metadata": _blocks(path, backend_obj),
    }
    if backend_obj.inference_precision is not None:  # OpenVINO: what load() compiles it at
        report["inference_precision"] = {"precision": backend_obj.inference_precision,
                                         "why": backend_obj.precision_note}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runtime = loader.read_metadata(backend_obj)
            report["runtime_metadata"] = _summary(runtime)
        except Exception as exc:  # what load() would refuse, said instead of raised
            report["runtime_metadata"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["runtime_warnings"] = [str(w.message) for w in caught]
    backend_obj.close()
    return report


def _checksum_state(path: Path, fmt) -> dict:
    from edgeseg import integrity

    if not fmt.checksummed:
        return {"state": "not recorded", "detail": "this format records no checksum (directory or checkpoint)"}
    companions = [path.with_suffix(s) for s in fmt.companions]
    try:
        value = integrity.verify(path.read_bytes(), [c for c in companions if c.is_file()])
    except integrity.ChecksumError as exc:
        return {"state": "MISMATCH", "detail": f"{exc}; the file changed after conversion"}
    if value is None:
        return {"state": "not recorded", "detail": "the file records no edgeseg checksum"}
    return {"state": "verified", "value": value}


def _tensor(info) -> dict:
    out = {"name": info.name, "shape": list(info.shape), "dtype": str(info.dtype)}
    if info.quantized:
        out["quantization"] = {"scale": info.scale, "zero_point": info.zero_point}
    return out


def _summary(meta) -> dict:
    data = dataclasses.asdict(meta)
    data["num_classes"] = meta.num_classes
    data.pop("palette", None)
    if len(data["classes"]) > 32:
        data["classes"] = [*data["classes"][:32], f"... ({meta.num_classes} in all)"]
    return data


def _blocks(path: Path, backend) -> dict:
    """Every metadata block of the file, by the name of its container."""
    from edgeseg.runtime.formats import FORMATS

    blocks: dict = {}
    text = backend.metadata_json()
    if text is not None:
        try:
            blocks["edgeseg"] = json.loads(text)
            blocks["edgeseg"].pop("palette", None)
        except ValueError as exc:
            blocks["edgeseg"] = {"error": f"not valid JSON: {exc}"}
    if backend.name == FORMATS["tflite"].backend_name:  # TFLite's own metadata table and labels
        from edgeseg.runtime.tflite_metadata import (
            STANDARD_KEY, TFLiteMetadataError, read_associated_files, read_standard_metadata, read_tflite_metadata,
        )

        data = path.read_bytes()
        blocks["tflite_entries"] = {k: f"{len(v)} bytes" for k, v in read_tflite_metadata(data).items()}
        try:
            standard = read_standard_metadata(data)
        except TFLiteMetadataError as exc:
            standard = None
            blocks[STANDARD_KEY] = {"error": str(exc)}
        if standard is not None:
            blocks[STANDARD_KEY] = dataclasses.asdict(standard)
        files = read_associated_files(data)
        if files:
            blocks["associated_files"] = {k: f"{len(v)} bytes" for k, v in files.items()}
    model_info = getattr(backend, "_model_info", None)
    if model_info:
        blocks["model_info"] = dict(model_info)
    session = getattr(backend, "_session", None)
    if session is not None and hasattr(session, "get_modelmeta"):
        props = dict(session.get_modelmeta().custom_metadata_map)
        props.pop("edgeseg", None)
        if props:
            blocks["onnx_metadata_props"] = props
    coreml = getattr(backend, "_model", None)
    if coreml is not None and hasattr(coreml, "user_defined_metadata"):
        other = {k: v for k, v in dict(coreml.user_defined_metadata).items() if k != "edgeseg"}
        if other:
            blocks["coreml_user_defined"] = other
    return blocks


def render(report: dict) -> str:
    """The report as text for a terminal."""
    lines = [f"{report['file']}  ({report['backend']})"]
    state = report["checksum"]
    lines.append(f"checksum: {state['state']}" + (f" ({state.get('detail') or state.get('value')})"))
    for kind in ("inputs", "outputs"):
        lines.append(f"{kind}:")
        for t in report[kind]:
            quant = t.get("quantization")
            q = f"  scale {quant['scale']:.6g} zero point {quant['zero_point']}" if quant else ""
            lines.append(f"  {t['name']}: {t['dtype']} {tuple(t['shape'])}{q}")
    if not report["metadata"]:
        lines.append("metadata blocks: none")
    for name, block in report["metadata"].items():
        lines.append(f"metadata block {name!r}:")
        for key, value in (block.items() if isinstance(block, dict) else [("value", block)]):
            lines.append(f"  {key}: {_short(value)}")
    if "inference_precision" in report:
        chosen = report["inference_precision"]
        lines.append(f"inference precision: {chosen['precision']} ({chosen['why']})")
    lines.append("the runtime would run it with:")
    for key, value in report["runtime_metadata"].items():
        lines.append(f"  {key}: {_short(value)}")
    for text in report["runtime_warnings"]:
        lines.append(f"warning: {text}")
    # Names and metadata come from the file: a control character (ESC starts a terminal escape
    # sequence, a newline would fake a line of this report) is shown as its escape, not obeyed.
    return "\n".join(_CONTROL.sub(lambda m: repr(m.group())[1:-1], line) for line in lines)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _short(value, limit: int = 160) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
