"""Converters: a trained model -> a verified file for one target (ONNX, TFLite, CoreML, OpenVINO).

``convert(model_or_checkpoint, target, ...)`` builds the export graph (see ``wrapper``), hands it
to the target's converter module (one file per target, each importing its own library, all with
the same ``export(graph, files, options)``; int8 goes to the target's ``edgeseg.quantization``
module), writes atomically, runs the new file through ``edgeseg.runtime`` against PyTorch and
keeps it only if it passes (see ``verify``). The targets are the rows of the format table
(``edgeseg.runtime.formats``) that name a converter module.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

from edgeseg.converters.errors import ConversionError, UnsupportedOpError, VerificationError
from edgeseg.converters.options import ExportOptions
from edgeseg.errors import ConfigError, EdgesegError
from edgeseg.metadata import ModelMetadata
from edgeseg.runtime import formats
from edgeseg.runtime.formats import Format

# The targets: the format table's rows with a converter module (what each accepts, its defaults).
# Int8 files are written by the row's int8 module (edgeseg.quantization), which quantizes and
# runs the accuracy gate.
TARGETS = formats.TableView(formats.targets)

__all__ = [
    "TARGETS",
    "ConvertedFile",
    "ConversionResult",
    "ConversionError",
    "ExportOptions",
    "UnsupportedOpError",
    "VerificationError",
    "convert",
    "read_metadata",
]


@dataclass
class ConvertedFile:
    path: Path  # the main file (.onnx, .tflite, .mlpackage, .xml)
    companions: tuple[Path, ...]  # files that belong with it (OpenVINO's .bin)
    metadata: ModelMetadata  # what the file carries
    report: object  # verify.VerificationReport


@dataclass
class ConversionResult:
    target: str
    options: ExportOptions
    files: list[ConvertedFile] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """The single file written (for a conversion that writes several, see ``files``)."""
        if len(self.files) != 1:
            raise ValueError(f"this conversion wrote {len(self.files)} files; use .files")
        return self.files[0].path

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]


def target_spec(target: str) -> Format:
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[target]


def target_module(spec: Format, precision: str = "fp32") -> ModuleType:
    """Import a target's converter (or int8) module, saying which extra to install when its
    library is missing."""
    try:
        return importlib.import_module(spec.int8 if precision == "int8" else spec.converter)
    except ImportError as exc:
        raise ConfigError(
            f"the {spec.name} converter needs a library that is not installed ({exc.name}); "
            f'install it with `pip install "edgeseg[{spec.converter_extra}]"`'
        ) from exc


def convert(
    model_or_checkpoint,
    target: str,
    *,
    precision: str = "fp32",
    input_size: tuple[int, int] | None = None,
    layout: str | None = None,
    include_preprocess: bool | None = None,
    argmax: bool = False,
    domain: str | None = None,
    out: str | os.PathLike[str] | None = None,
    quant=None,
    coreml_input: str | None = None,
    progress=None,
    output_stride: int = 1,
) -> ConversionResult:
    """Convert a model (or an edgeseg ``.safetensors`` checkpoint) for ``target`` and verify it.

    Writes one file, or one per domain with ``domain="all"``; each is run on its backend against
    PyTorch before it is kept. ``layout`` None: the target's default (NHWC for TFLite, whose
    consumers all take NHWC images; NCHW elsewhere); ``include_preprocess`` None: the target's
    default (TFLite files take uint8 RGB and normalize inside, as MediaPipe needs). Raises
    :class:`UnsupportedOpError` when the target refuses an op, :class:`VerificationError` when
    the file disagrees with PyTorch; neither leaves a file.
    ``precision="int8"`` quantizes with ``quant`` (an ``edgeseg.quantization.QuantOptions``;
    None = its defaults) and keeps the file only if it passes the harness's accuracy gate.
    ``coreml_input``: CoreML's image input, ``"image"`` (ImageType, the default) or ``"tensor"``.
    ``progress(text)`` hears each stage (the CLI prints it: a conversion takes minutes).
    ``output_stride``: N > 1 leaves the final upsample out of the graph, whose logits (or mask)
    are then at 1/N of the input (N: the head's own stride, or a divisor of it); the metadata
    records it and the runtime upsamples once, straight to each image's size.
    """
    from edgeseg.converters.wrapper import build_graphs

    spec = target_spec(target)
    if precision == "int8" and quant is None:
        from edgeseg.quantization.options import QuantOptions

        quant = QuantOptions()
    options = ExportOptions(target, precision, input_size, layout or spec.default_layout, include_preprocess, argmax,
                            domain, quant, coreml_input, output_stride)
    if include_preprocess is None:  # a CoreML tensor input keeps today's float normalized input
        options = replace(options, include_preprocess=spec.default_preprocess and coreml_input != "tensor")
    options.check(spec)
    model, source = _load(model_or_checkpoint)
    backend = target_module(spec, precision)
    result = ConversionResult(target, options)
    for graph in build_graphs(model, options, spec):
        dest = _destination(out, source, graph, spec)
        result.files.append(_write_verified(backend, spec, graph, dest, options, progress or (lambda _: None)))
    return result


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The edgeseg metadata stored in a converted file (any target, by suffix), read as the runtime
    reads it (its backend and ``edgeseg.runtime.read_metadata``); where the format cannot run here
    (CoreML off macOS), from the converter module's ``metadata_json(files)``."""
    path = Path(path)
    spec = next((s for s in TARGETS.values() if path.suffix == s.suffix), None)
    if spec is None:
        raise ConfigError(f"{path}: unknown suffix {path.suffix!r}; expected one of "
                          + ", ".join(s.suffix for s in TARGETS.values()))
    missing = ConfigError(f"{path} carries no edgeseg metadata; was it written by edgeseg convert?")
    if not spec.runs_here():
        text = target_module(spec).metadata_json(spec.files(path))
        if text is None:
            raise missing
        return ModelMetadata.from_json(text)
    from edgeseg.runtime.loader import _backend_class
    from edgeseg.runtime.loader import read_metadata as runtime_metadata

    backend = _backend_class(spec.backend_name)(path, threads=1)
    try:
        if backend.metadata_json() is None:  # the runtime would guess it (foreign files)
            raise missing
        return runtime_metadata(backend)
    finally:
        backend.close()


def _write_verified(backend: ModuleType, spec: Format, graph, dest: Path, options, say) -> ConvertedFile:
    from edgeseg.converters.failures import explain_failure
    from edgeseg.converters.verify import opened_with_runtime, verify_file
    from edgeseg.fileio import atomic_output, atomic_outputs
    from edgeseg.integrity import PLACEHOLDER, stamp

    dests = [dest.with_suffix(s) for s in spec.suffixes]
    writer = atomic_output(dest, is_dir=True) if spec.is_dir else atomic_outputs(*dests)
    # Files record the checksum of their own bytes (edgeseg.integrity) where their format row
    # says so; a CoreML package is a directory that CoreML compiles on the device, left without one.
    checksummed = spec.checksummed
    if checksummed:
        graph.metadata = graph.metadata.replace(checksum=PLACEHOLDER)
    with writer as tmp:
        files = (tmp,) if spec.is_dir else tuple(tmp)
        what = "calibrating, quantizing and gating" if options.precision == "int8" else "converting"
        say(f"{spec.name} {options.precision}: {what} {dest.name}")
        try:
            backend.export(graph, files, options)
        except EdgesegError:
            raise
        except Exception as exc:
            raise explain_failure(exc, graph, spec.name) from exc
        if checksummed:
            graph.metadata = graph.metadata.replace(checksum=stamp(files))
        runs = spec.runs_here()
        images = None
        if graph.metadata.precision == "int8" and runs and options.quant is not None:
            from edgeseg.quantization.calibration import held_out_images

            images = held_out_images(options.quant.gate_spec, 4, graph.metadata.input_size)
        say(f"{spec.name} {options.precision}: checking {dest.name} against PyTorch"
            + ("" if runs else " (metadata only: it cannot run here)"))
        check = dict(module=graph.module, meta=graph.metadata, names=graph.output_names, target=spec.name,
                     images=images)
        if runs:
            with opened_with_runtime(files, spec, dest.name) as session:
                report = verify_file(session, metadata_read=session.metadata, **check)
        else:
            text = target_module(spec).metadata_json(files)
            report = verify_file(None, metadata_read=ModelMetadata.from_json(text) if text else None,
                                 note=target_module(spec).cannot_run_note(files, graph), **check)
        report.gate = graph.gate
        if not report.passed:
            raise VerificationError(
                f"{dest.name} was not kept: it does not match PyTorch. {report.summary()}. "
                "Try --precision fp32, another target, or report the model and target as a bug",
                report,
            )
    return ConvertedFile(dests[0], tuple(dests[1:]), graph.metadata, report)


def _load(model_or_checkpoint) -> tuple[object, Path | None]:
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        from edgeseg.checkpoint import load_model

        path = Path(model_or_checkpoint)
        return load_model(path), path
    if not hasattr(model_or_checkpoint, "metadata"):
        raise ConfigError(
            "convert() takes an edgeseg model (with .metadata) or the path of an edgeseg "
            ".safetensors checkpoint"
        )
    return model_or_checkpoint.eval(), None


def _destination(out, source: Path | None, graph, spec: Format) -> Path:
    meta = graph.metadata
    suffix = spec.suffix
    if out is None:
        h, w = meta.input_size
        stem = source.stem if source is not None else meta.model
        path = (source.parent if source is not None else Path.cwd()) / f"{stem}_{h}x{w}_{meta.precision}{suffix}"
    else:
        path = Path(out)
        if path.suffix != suffix:
            raise ConfigError(f"--out {path} must end in {suffix} for target {spec.name}")
    return path.with_name(path.stem + graph.suffix_tag + suffix)
