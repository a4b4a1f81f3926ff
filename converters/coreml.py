"""CoreML target: torch.export -> coremltools ML Program (.mlpackage), user-defined metadata.

fp16/fp32 is the ML Program's compute precision. CoreML models run only on macOS: elsewhere the
conversion validates the saved spec (input/output names, dtypes, shapes, metadata) and the
verification report says that numerics were NOT checked.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import coremltools as ct
import numpy as np
import torch

from edgeseg.metadata import METADATA_KEY

# iOS 16 / macOS 13: the first with fp16 multiarray I/O support; uint8 inputs/outputs need iOS 17.
MIN_TARGET = ct.target.iOS17
_ARRAY = ct.proto.FeatureTypes_pb2.ArrayFeatureType
_PRECISION = {"fp32": ct.precision.FLOAT32, "fp16": ct.precision.FLOAT16}


# --coreml-input: "image" (an ImageType Vision can hand a camera pixel buffer; the default) or
# "tensor" (a float32 MultiArray, as before). Recorded in metadata.extra["coreml_input"].
COREML_INPUTS = ("image", "tensor")
# Xcode's model preview (and apps that follow it) read a segmenter's labels from these keys.
PREVIEW_TYPE, PREVIEW_PARAMS = "com.apple.coreml.model.preview.type", "com.apple.coreml.model.preview.params"


def mark_input_kind(graph, options) -> None:
    """Record the input kind in the file's metadata (the runtime and check_spec read it)."""
    kind = getattr(options, "coreml_input", None) or "image"
    graph.metadata = graph.metadata.replace(extra={**graph.metadata.extra, "coreml_input": kind})


def input_types(graph) -> list:
    """The image input as CoreML sees it. An ImageType has one scale for all channels (and a
    bias per channel), so ImageNet's per-channel std cannot be its scale: the image goes in as
    RGB pixels 0..255 (scale 1, bias 0) and the graph normalizes (include_preprocess)."""
    shape = tuple(graph.sample.shape)
    if graph.metadata.extra.get("coreml_input", "tensor") == "image":
        return [ct.ImageType(name=graph.input_name, shape=shape, scale=1.0, bias=[0.0, 0.0, 0.0],
                             color_layout=ct.colorlayout.RGB)]
    return [ct.TensorType(name=graph.input_name, shape=shape, dtype=np.float32)]


def describe(model, meta, what: str) -> None:
    """The model's metadata: edgeseg's entry, the class labels where Xcode and apps look for
    them, and the descriptions Xcode shows."""
    model.user_defined_metadata[METADATA_KEY] = meta.to_json()
    classes = list(meta.domain_info(meta.domain).classes if meta.domain else meta.classes)
    model.user_defined_metadata[PREVIEW_TYPE] = "imageSegmenter"
    model.user_defined_metadata[PREVIEW_PARAMS] = json.dumps({"labels": classes})
    model.user_defined_metadata["classes"] = ",".join(classes)
    model.short_description = f"edgeseg {meta.model} ({what}): semantic segmentation, {len(classes)} classes"
    model.version = meta.edgeseg_version
    model.author = "edgeseg"


def export(graph, files: tuple[Path, ...], options) -> None:
    mark_input_kind(graph, options)
    program = torch.export.export(graph.module, (graph.sample,), strict=False).run_decompositions({})
    # No uint8 I/O here (the format row's pixel_dtype/mask_dtype): pixels 0..255 as float32, int32 masks.
    out_dtype = np.int32 if graph.metadata.argmax else np.float32
    model = ct.convert(
        program,
        inputs=input_types(graph),
        outputs=[ct.TensorType(name=name, dtype=out_dtype) for name in graph.output_names],
        convert_to="mlprogram",
        compute_precision=_PRECISION[options.precision],
        minimum_deployment_target=MIN_TARGET,
        skip_model_load=True,  # loading needs the macOS CoreML framework
    )
    describe(model, graph.metadata, graph.metadata.precision)
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


def metadata_json(files: tuple[Path, ...]) -> str | None:
    """The edgeseg metadata JSON in the saved spec, read without the macOS CoreML framework (the
    conversion's check where the runtime's CoreML backend cannot run)."""
    return dict(_spec(files).description.metadata.userDefined).get(METADATA_KEY)


def check_spec(files: tuple[Path, ...], graph) -> list[str]:
    """Problems with the saved spec's inputs and outputs (empty when it matches the graph)."""
    spec = _spec(files)
    problems = []
    inputs = {i.name: i for i in spec.description.input}
    if list(inputs) != [graph.input_name]:
        problems.append(f"inputs are {list(inputs)}, expected ['{graph.input_name}']")
    elif graph.metadata.extra.get("coreml_input", "tensor") == "image":
        image = inputs[graph.input_name].type.imageType
        kind = inputs[graph.input_name].type.WhichOneof("Type")
        _, _, height, width = graph.sample.shape
        if kind != "imageType":
            problems.append(f"the image input is a {kind}, expected an imageType")
        elif (image.height, image.width) != (height, width):
            problems.append(f"input image {image.height}x{image.width} != {height}x{width}")
        elif image.colorSpace != ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB:
            problems.append("the image input's colour space is not RGB")
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
