"""CoreML target: torch.export -> coremltools ML Program (.mlpackage), user-defined metadata.

fp16/fp32 is the ML Program's compute precision. CoreML models run only on macOS: elsewhere the
conversion validates the saved spec (input/output names, dtypes, shapes, metadata) and the
verification report says that numerics were NOT checked.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import coremltools as ct
import numpy as np
import torch

from edgeseg.metadata import METADATA_KEY

# iOS 16 / macOS 13: the first with fp16 multiarray I/O support; uint8 inputs/outputs need iOS 17.
MIN_TARGET = ct.target.iOS17
_ARRAY = ct.proto.FeatureTypes_pb2.ArrayFeatureType
_PRECISION = {"fp32": ct.precision.FLOAT32, "fp16": ct.precision.FLOAT16}


def export(graph, files: tuple[Path, ...], options) -> None:
    program = torch.export.export(graph.module, (graph.sample,), strict=False).run_decompositions({})
    # No uint8 I/O here (TargetSpec.pixel_dtype/mask_dtype): pixels 0..255 as float32, int32 masks.
    out_dtype = np.int32 if graph.metadata.argmax else np.float32
    model = ct.convert(
        program,
        inputs=[ct.TensorType(name=graph.input_name, shape=tuple(graph.sample.shape), dtype=np.float32)],
        outputs=[ct.TensorType(name=name, dtype=out_dtype) for name in graph.output_names],
        convert_to="mlprogram",
        compute_precision=_PRECISION[options.precision],
        minimum_deployment_target=MIN_TARGET,
        skip_model_load=True,  # loading needs the macOS CoreML framework
    )
    model.user_defined_metadata[METADATA_KEY] = graph.metadata.to_json()
    model.short_description = f"edgeseg {graph.metadata.model} ({graph.metadata.precision})"
    # save() wants a path ending in .mlpackage; the atomic temp path does not, so save in a
    # scratch folder and move the package onto the temp path.
    dest = files[0]
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".coreml-") as scratch:
        package = Path(scratch) / "model.mlpackage"
        model.save(str(package))
        shutil.rmtree(dest, ignore_errors=True)
        package.rename(dest)


def _spec(files: tuple[Path, ...]):
    return ct.models.MLModel(str(files[0]), skip_model_load=True).get_spec()


def read_metadata(files: tuple[Path, ...]) -> str | None:
    return dict(_spec(files).description.metadata.userDefined).get(METADATA_KEY)


def check_spec(files: tuple[Path, ...], graph) -> list[str]:
    """Problems with the saved spec's inputs and outputs (empty when it matches the graph)."""
    spec = _spec(files)
    problems = []
    inputs = {i.name: i for i in spec.description.input}
    if list(inputs) != [graph.input_name]:
        problems.append(f"inputs are {list(inputs)}, expected ['{graph.input_name}']")
    else:
        shape = tuple(inputs[graph.input_name].type.multiArrayType.shape)
        if shape != tuple(graph.sample.shape):
            problems.append(f"input shape {shape} != {tuple(graph.sample.shape)}")
        if inputs[graph.input_name].type.multiArrayType.dataType != _ARRAY.FLOAT32:
            problems.append("the image input is not float32")
    outputs = [o.name for o in spec.description.output]
    if outputs != list(graph.output_names):
        problems.append(f"outputs are {outputs}, expected {list(graph.output_names)}")
    want = _ARRAY.INT32 if graph.metadata.argmax else _ARRAY.FLOAT32
    for o in spec.description.output:
        if o.type.multiArrayType.dataType != want:
            problems.append(f"output {o.name} has array type {o.type.multiArrayType.dataType}, expected {want}")
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"model type is {spec.WhichOneof('Type')}, expected an ML Program")
    return problems


def cannot_run_note(files: tuple[Path, ...], graph) -> str:
    problems = check_spec(files, graph)
    if problems:
        from edgeseg.converters.errors import ConversionError

        raise ConversionError("the CoreML spec does not match the export graph: " + "; ".join(problems))
    return "CoreML runs on macOS only; the spec was validated (inputs, outputs, metadata)"


def load(files: tuple[Path, ...], graph) -> Callable[[np.ndarray], list[np.ndarray]]:
    model = ct.models.MLModel(str(files[0]))  # macOS only (TARGETS says where CoreML runs)
    return lambda x: [model.predict({graph.input_name: x})[name] for name in graph.output_names]
